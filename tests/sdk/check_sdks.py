"""Points Alibaba's own Python SDKs at the simulator — the legacy SDK (signature V1), the Tea SDK
with signature_algorithm='v2' (V1 too) and the Tea SDK in its default mode (V3, ACS3-HMAC-SHA256):
a good request must get HTTP 200 with a RequestId, a wrong secret must get SignatureDoesNotMatch.
Prints one JSON object per check.

Usage: check_sdks.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET
"""
import json
import sys

ENDPOINT, KEY_ID, SECRET = sys.argv[1:4]


def legacy(secret, invoke_id):
    """aliyun-python-sdk-core + aliyun-python-sdk-ecs (signature v1 over POST query)."""
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

    client = AcsClient(KEY_ID, secret, "cn-hangzhou", auto_retry=False, max_retry_time=0)
    request = StopInvocationRequest()
    request.set_endpoint(ENDPOINT)
    request.set_protocol_type("http")
    request.set_accept_format("json")
    request.set_InvokeId(invoke_id)
    request.set_InstanceIds(["i-demo06a", "i-demo06b"])
    try:
        body = json.loads(client.do_action_with_exception(request))
        return {"ok": True, "request_id": body.get("RequestId")}
    except ServerException as e:
        return {"ok": False, "status": e.get_http_status(), "code": e.get_error_code()}


def tea(secret, invoke_id, algorithm):
    """alibabacloud_ecs20140526: with signature_algorithm='v2' (RPC signature v1.0), or in its
    default mode (None: ACS3-HMAC-SHA256)."""
    from alibabacloud_ecs20140526 import models
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi.models import Config
    from Tea.exceptions import TeaException

    config = Config(
        access_key_id=KEY_ID,
        access_key_secret=secret,
        endpoint=ENDPOINT,
        protocol="http",
        region_id="cn-hangzhou",
        signature_algorithm=algorithm,
    )
    client = Client(config)
    try:
        response = client.stop_invocation(
            models.StopInvocationRequest(region_id="cn-hangzhou", invoke_id=invoke_id, instance_id=["i-demo07a"])
        )
        return {"ok": True, "status": response.status_code, "request_id": response.body.request_id}
    except TeaException as e:
        status = (e.data or {}).get("statusCode") if isinstance(e.data, dict) else None
        return {"ok": False, "status": status, "code": e.code}


SDKS = (
    ("legacy", "t-demo0006", legacy),
    ("tea", "t-demo0007", lambda secret, invoke_id: tea(secret, invoke_id, "v2")),
    ("tea-v3", "t-demo0008", lambda secret, invoke_id: tea(secret, invoke_id, None)),
)
for name, invoke_id, check in SDKS:
    print(json.dumps({"sdk": name, "case": "good", **check(SECRET, invoke_id)}))
    print(json.dumps({"sdk": name, "case": "wrong-secret", **check(SECRET + "x", invoke_id)}))
    print(json.dumps({"sdk": name, "case": "unknown-invocation", **check(SECRET, "t-missing")}))
