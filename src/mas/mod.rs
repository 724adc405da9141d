//! Multi-agent systems: agent graphs, built-in topologies, seed prompts, batched execution with
//! traces and partial re-run.
