"""MQTT: the site's figures as retained topics, Home Assistant discovery, and commands
into the runtime settings store (docs/mqtt.md)."""
