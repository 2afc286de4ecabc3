"""Re-signs requests the gateway sent with Alibaba's own V3 code (alibabacloud_tea_openapi
Utils.get_authorization), over exactly the headers the gateway signed. Reads a JSON list of
{method, query: [[name, value]...] decoded, headers: {name: value}, access_key_id, secret} on stdin;
prints one Authorization value per line.
"""
import json
import sys

from darabonba.request import DaraRequest
from alibabacloud_tea_openapi.utils import Utils

ALGORITHM = "ACS3-HMAC-SHA256"

for case in json.load(sys.stdin):
    request = DaraRequest()
    request.method = case["method"]
    request.pathname = "/"
    request.query = dict(case["query"])
    request.headers = dict(case["headers"])
    payload = case["headers"]["x-acs-content-sha256"]
    print(Utils.get_authorization(request, ALGORITHM, payload, case["access_key_id"], case["secret"]))
