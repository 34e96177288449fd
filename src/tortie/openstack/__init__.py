"""OpenStack: endpoints for VMs whose addresses Neutron chose, and guest-image advice."""
