"""Review items and queues: the state of every item, who may work which queue, leases and decisions."""
