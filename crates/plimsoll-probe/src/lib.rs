//! Reads the memory of a Linux process tree, its cgroup and the system's PSI at one instant.
//! No async and no HTTP: the supervisor calls it from its own sampling task.
