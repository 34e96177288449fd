"""The node side: what calico-node does on every host.

``tortie node startup`` (startup.py) reads the calico-node environment (config.py),
detects the host's addresses (autodetect.py), derives the router id (routerid.py),
creates the default pools (defaultpools.py), prepares the host (hostprep.py) and writes
the Node resource.  ``tortie node run`` (agent.py) then keeps BIRD 2 (bird.py renders its
configuration, birdproc.py supervises the daemon) in step with the datastore, so every
node learns where the other nodes' blocks live.  status.py and health.py answer
``tortie node status`` and ``tortie node health``.  Adapters above, IPAM service below.
"""
