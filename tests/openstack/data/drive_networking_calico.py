# mypy: ignore-errors
"""How ``networking_calico_3.12_endpoint.json`` was made: the unmodified
``networking-calico`` 3.12 package's ``endpoint_name``, ``endpoint_spec``,
``endpoint_labels``, ``endpoint_annotations`` and ``datamodel_v3.put``, run for the port
given as JSON in argv[1], with only the imports it cannot satisfy here replaced
(``pbr``, ``neutron.db``, ``networking_calico.compat`` / ``common.config`` for oslo and
neutron_lib, and ``networking_calico.etcdv3`` by an in-memory put).  Run with a Python
that has ``pip install --no-deps networking-calico==3.12.0``; not part of the test run.
"""

import json
import sys
import types
from unittest import mock

written = {}


class FakeEtcd(types.ModuleType):
    class KeyNotFound(Exception):
        pass

    def get(self, key, with_lease=False):
        raise self.KeyNotFound()

    def put(self, key, value, mod_revision=None, lease=None, existing_value=None):
        written[key] = json.loads(value)
        return True


STUBBED = [
    "pbr",
    "pbr.version",
    "neutron",
    "neutron.db",
    "neutron.db.models_v2",
    "neutron.db.models",
    "neutron.db.models.l3",
    "networking_calico.compat",
    "networking_calico.common",
    "networking_calico.common.config",
]
for name in STUBBED:
    sys.modules[name] = mock.MagicMock()
sys.modules["networking_calico.etcdv3"] = FakeEtcd("networking_calico.etcdv3")

from networking_calico import datamodel_v3  # noqa: E402
from networking_calico.plugins.ml2.drivers.calico import endpoints as ep  # noqa: E402

port = json.loads(sys.argv[1])
port["interface_name"] = "tap" + port["id"][:11]  # WorkloadEndpointSyncer.add_port_interface_name
name = ep.endpoint_name(port)
datamodel_v3.put(
    "WorkloadEndpoint",
    "openstack",
    name,
    ep.endpoint_spec(port),
    labels=ep.endpoint_labels(port, "openstack"),
    annotations=ep.endpoint_annotations(port),
)
print(json.dumps(written, sort_keys=True))
