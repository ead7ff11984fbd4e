"""The host side around the core: data, devices, the loop, checkpoints, reports, pictures
and the command line. Imports dl101_jax.core, never the tools on top."""
