"""Sends one StopInvocation with the Tea SDK in its default mode (V3) to ENDPOINT, which records
it; the answer does not matter. Usage: tea_v3_capture.py HOST:PORT KEY_ID SECRET TOKEN|- REGION
INVOKE_ID [INSTANCE_ID...]
"""
import sys

from alibabacloud_ecs20140526 import models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi.models import Config

endpoint, key_id, secret, token, region, invoke_id, *instances = sys.argv[1:]
config = Config(
    access_key_id=key_id,
    access_key_secret=secret,
    security_token=None if token == "-" else token,
    endpoint=endpoint,
    protocol="http",
    region_id=region,
)
request = models.StopInvocationRequest(
    region_id=region, invoke_id=invoke_id, instance_id=instances or None
)
try:
    Client(config).stop_invocation(request)
except Exception as error:  # the capturing upstream may answer anything
    print(f"answered: {type(error).__name__}", file=sys.stderr)
