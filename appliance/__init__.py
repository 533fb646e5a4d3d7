"""sensor-bridge: the on-device package of the store appliance.

Sources (polled cameras, pushed reports) produce Records, the outbox keeps
them on disk, the uplink delivers them to the cloud API; services are thin
shells around those parts.
"""

__version__ = "0.1.0"
