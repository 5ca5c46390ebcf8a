"""The causal-LM family (issue 27): teachers and students that generate, per-token losses, the top-k teacher
signal and its cache, the LM task's data and its training loop. The classifier core in makd/ never imports it
except to dispatch a causal-LM task."""
