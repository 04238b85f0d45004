"""The embedded local cloud: the template's resources on moto, and the handlers wired to them."""
