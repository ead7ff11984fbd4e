"""The compiled core: pure functions of pytrees that jit, vmap and shard (networks,
augmentation, update rules, one member's state, the step and the scanned epoch, a
population on the device). Imports only dl101_jax.config and libraries."""
