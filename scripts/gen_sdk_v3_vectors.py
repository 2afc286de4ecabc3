"""Computes ACS3-HMAC-SHA256 (signature V3) vectors with Alibaba's own SDK code, writing
tests/data/v3-signature-vectors.json: the published RunInstances example, and StopInvocation shaped
as the gateway sends it (0, 1 and 50 instances; owner fields needing encoding; an STS token).

The canonical query and headers come from alibabacloud_tea_openapi.utils (get_canonical_query_string,
get_canonicalized_headers) and the Authorization value from Utils.get_authorization — never from the
gateway's signer. The canonical request and string to sign are spelled out as the SDK builds them
and checked here against the SDK's signature before anything is written.
Run: pip install alibabacloud_tea_openapi==0.4.6 && python3 scripts/gen_sdk_v3_vectors.py
"""
import hashlib
import hmac
import json
import pathlib

from darabonba.request import DaraRequest
from alibabacloud_tea_openapi import utils as openapi_utils
from alibabacloud_tea_openapi.utils import Utils

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY = Utils.hash(b"", ALGORITHM).hex()


def stop_invocation(region, invoke_id, instances, owner=None):
    query = {"RegionId": region, "InvokeId": invoke_id}
    for i, instance in enumerate(instances):
        query[f"InstanceId.{i + 1}"] = instance
    query.update(owner or {})
    return query


CASES = [
    {
        "label": "published RunInstances example",
        "access_key_id": "YourAccessKeyId",
        "secret": "YourAccessKeySecret",
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "action": "RunInstances",
        "date": "2023-10-26T10:22:32Z",
        "nonce": "3156853299f313e23d1673dc12e1703d",
        "security_token": None,
        "query": {
            "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            "RegionId": "cn-shanghai",
        },
        # From the documentation page, not from any code.
        "published": {
            "hashed_canonical_request": "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259",
            "signature": "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
        },
    },
    {
        "label": "StopInvocation on every instance",
        "access_key_id": "LTAI5tV3NoInstances",
        "secret": "v3-secret-none",
        "host": "ecs.cn-hangzhou.aliyuncs.com",
        "action": "StopInvocation",
        "date": "2026-12-04T08:00:00Z",
        "nonce": "a3f1c0de5b7e4d2f9c8b1a0e6d5c4b3a",
        "security_token": None,
        "query": stop_invocation("cn-hangzhou", "t-hz0v3none", []),
    },
    {
        "label": "StopInvocation on one instance",
        "access_key_id": "LTAI5tV3OneInstance",
        "secret": "v3-secret-one",
        "host": "ecs.cn-beijing.aliyuncs.com",
        "action": "StopInvocation",
        "date": "2026-12-04T08:00:01Z",
        "nonce": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        "security_token": None,
        "query": stop_invocation("cn-beijing", "t-bj0v3one", ["i-2zeone"]),
    },
    {
        "label": "StopInvocation on 50 instances",
        "access_key_id": "LTAI5tV3FiftyInstances",
        "secret": "v3-secret-fifty",
        "host": "ecs.eu-central-1.aliyuncs.com",
        "action": "StopInvocation",
        "date": "2026-12-04T08:00:02Z",
        "nonce": "ffffffffffffffff0000000000000000",
        "security_token": None,
        "query": stop_invocation(
            "eu-central-1", "t-fra0v3fifty", [f"i-gw8{n:03d}" for n in range(1, 51)]
        ),
    },
    {
        "label": "owner fields that need encoding",
        "access_key_id": "LTAI5tV3OwnerFields",
        "secret": "v3 secret/with+odd*chars~%",
        "host": "ecs-vpc.cn-shanghai.aliyuncs.com",
        "action": "StopInvocation",
        "date": "2026-12-04T08:00:03Z",
        "nonce": "1234567890abcdef1234567890abcdef",
        "security_token": None,
        "query": stop_invocation(
            "cn-shanghai",
            "t-sh0v3owner",
            ["i-uf6one", "i-uf6two"],
            {
                "OwnerId": "1234567890123",
                "OwnerAccount": "ops team+a/b*c~d%e",
                "ResourceOwnerId": "-42",
                "ResourceOwnerAccount": "équipe 運用",
            },
        ),
    },
    {
        "label": "STS credential with a security token",
        "access_key_id": "STS.NTv3TemporaryKey",
        "secret": "v3-sts-secret",
        "host": "ecs.ap-southeast-1.aliyuncs.com",
        "action": "StopInvocation",
        "date": "2026-12-04T08:00:04Z",
        "nonce": "deadbeefdeadbeefdeadbeefdeadbeef",
        "security_token": "CAIS+v3/token==with/odd+chars",
        "query": stop_invocation("ap-southeast-1", "t-sg0v3sts", ["i-t4nsts"]),
    },
]


def vector(case):
    headers = {
        "host": case["host"],
        "x-acs-action": case["action"],
        "x-acs-version": "2014-05-26",
        "x-acs-date": case["date"],
        "x-acs-signature-nonce": case["nonce"],
        "x-acs-content-sha256": EMPTY,
    }
    if case["security_token"]:
        # As the Tea SDK's call_api does with STS credentials.
        headers["x-acs-accesskey-id"] = case["access_key_id"]
        headers["x-acs-security-token"] = case["security_token"]
    request = DaraRequest()
    request.method = "POST"
    request.pathname = "/"
    request.query = dict(case["query"])
    request.headers = dict(headers)
    authorization = Utils.get_authorization(
        request, ALGORITHM, EMPTY, case["access_key_id"], case["secret"]
    )
    query = openapi_utils.get_canonical_query_string(request.query)
    canonical_headers, signed_headers = openapi_utils.get_canonicalized_headers(request.headers)
    canonical_request = f"POST\n/\n{query}\n{canonical_headers}\n{signed_headers}\n{EMPTY}"
    hashed = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{hashed}"
    signature = hmac.new(
        case["secret"].encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    # The stages spelled out here must give the SDK's own Authorization.
    expected = f"{ALGORITHM} Credential={case['access_key_id']},SignedHeaders={signed_headers},Signature={signature}"
    assert authorization == expected, (case["label"], authorization, expected)
    published = case.get("published")
    if published:
        assert hashed == published["hashed_canonical_request"], case["label"]
        assert signature == published["signature"], case["label"]
    return {
        "label": case["label"],
        "input": {
            "method": "POST",
            "access_key_id": case["access_key_id"],
            "secret": case["secret"],
            # Insertion order kept; the gateway's signer must sort.
            "query": case["query"],
            "headers": headers,
            "payload_sha256": EMPTY,
        },
        "expect": {
            "canonical_query": query,
            "canonical_headers": canonical_headers,
            "signed_headers": signed_headers,
            "canonical_request": canonical_request,
            "hashed_canonical_request": hashed,
            "string_to_sign": string_to_sign,
            "signature": signature,
            "authorization": authorization,
        },
    }


def main():
    out = {
        "source": "alibabacloud_tea_openapi 0.4.6 (utils.get_canonical_query_string, "
        "utils.get_canonicalized_headers, Utils.get_authorization); the first vector is also "
        "the documentation's published example. Made by scripts/gen_sdk_v3_vectors.py.",
        "vectors": [vector(case) for case in CASES],
    }
    path = pathlib.Path(__file__).resolve().parent.parent / "tests/data/v3-signature-vectors.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(out['vectors'])} vectors to {path}")


if __name__ == "__main__":
    main()
