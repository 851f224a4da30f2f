"""CLI command modules; each registers its commands on :data:`drcnet.cli.app`."""
