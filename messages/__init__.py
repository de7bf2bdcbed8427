"""The wire protocol: constants, message encoding, validation and the records replies carry."""
