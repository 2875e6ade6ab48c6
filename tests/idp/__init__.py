"""Local identity providers for the SSO tests: real protocol servers on loopback ports."""
