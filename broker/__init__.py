"""The message-bus core: socket set-up, the ROUTER service loop, the DEALER request client."""
