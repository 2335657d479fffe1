"""evse-gateway: one central allocation for every EV charger on a site."""

__version__ = "0.1.0"
