"""The declarative driver contract: how to start a service, chat with it, and what it claims."""

from aislab.driver.model import Driver, DriverError, load_driver

__all__ = ["Driver", "DriverError", "load_driver"]
