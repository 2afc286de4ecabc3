"""Which credential does Alibaba's own default chain pick? The oracle for tests/credentials_oracle.rs.

Runs alibabacloud-credentials' DefaultCredentialsProvider in the environment this process was given
(the test sets HOME, the ALIBABA_CLOUD_* variables and the files). The SDK has no setting for the
metadata address or the STS host, so its one HTTP entry point is wrapped: 100.100.100.200 goes to
ORACLE_METADATA and *.aliyuncs.com to ORACLE_STS (both loopback fakes), over plain HTTP; any other
host except loopback is refused, so nothing leaves the machine. Prints one JSON line:
{"access_key_id": ..., "provider": ..., "sts_hosts": [...]} or {"error": ...}.
"""

import json
import os
import sys

from Tea.core import TeaCore

REAL_DO_ACTION = TeaCore.do_action
STS_HOSTS = []


def loopback(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def redirected(request, runtime_option=None):
    host = request.headers.get("host", "")
    if host == "100.100.100.200":
        target = os.environ["ORACLE_METADATA"]
    elif host.endswith(".aliyuncs.com"):
        STS_HOSTS.append(host)
        target = os.environ["ORACLE_STS"]
    elif host in ("127.0.0.1", "localhost"):
        return REAL_DO_ACTION(request, runtime_option)
    else:
        raise RuntimeError(f"the oracle refuses to contact {host}")
    request.headers["host"], request.port = loopback(target)
    request.protocol = "http"
    return REAL_DO_ACTION(request, runtime_option)


TeaCore.do_action = staticmethod(redirected)

# Imported after the wrap, and after the environment is final: the SDK reads it at import.
from alibabacloud_credentials.provider.default import DefaultCredentialsProvider  # noqa: E402

try:
    credentials = DefaultCredentialsProvider().get_credentials()
    print(json.dumps({
        "access_key_id": credentials.get_access_key_id(),
        "provider": credentials.get_provider_name(),
        "sts_hosts": STS_HOSTS,
    }))
except Exception as error:  # the SDK raises several types; any of them means "nothing found"
    print(json.dumps({"error": str(error)[:300], "sts_hosts": STS_HOSTS}))
sys.stdout.flush()
os._exit(0)  # the instance-role provider starts a scheduler thread; do not wait for it
