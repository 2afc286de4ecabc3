"""Prints, as JSON, the ECS host Alibaba's SDKs pick for each region read from stdin (one a line):
{"region": {"public": host, "vpc": host, "legacy": host or null}}.

"public"/"vpc": alibabacloud_ecs20140526's Client(Config(region_id=..., network=...))._endpoint
(the Tea SDK: its endpoint map, then the "regional" rule). "legacy": the endpoint map of
aliyun-python-sdk-ecs (aliyunsdkecs/endpoint.py), where it has an entry.
"""

import json
import sys

from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi.models import Config
from aliyunsdkecs.endpoint import EndpointData

legacy_map = EndpointData().endpoint_map
hosts = {}
for region in (line.strip() for line in sys.stdin):
    if not region:
        continue
    entry = {}
    for network in ("public", "vpc"):
        config = Config(
            access_key_id="LTAIoracle", access_key_secret="oracle", region_id=region, network=network
        )
        entry[network] = Client(config)._endpoint
    entry["legacy"] = legacy_map.get(region)
    hosts[region] = entry
json.dump(hosts, sys.stdout)
