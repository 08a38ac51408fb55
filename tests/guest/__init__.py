"""The fixture guest's sources; `guest.workload` is the Python mirror of its workload."""
