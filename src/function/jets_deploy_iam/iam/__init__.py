"""The IAM edge: reading a group into the actual state, proving a plan can apply, applying it."""
