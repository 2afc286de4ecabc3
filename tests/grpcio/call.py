"""Makes one StopInvocation call with Python grpcio, whose default metadata limit is 16 KiB, and
prints the outcome: OK, or the status code's name and the start of its message.

Usage: call.py HOST:PORT HEX_ENCODED_REQUEST
The request comes already encoded, so no generated stubs are needed.
"""
import sys

import grpc


def main() -> None:
    target, payload = sys.argv[1], bytes.fromhex(sys.argv[2])
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/ecsgateway.v1.CloudAssistantService/StopInvocation")
        try:
            call(payload, timeout=10)
        except grpc.RpcError as error:
            print(error.code().name, (error.details() or "")[:100].replace("\n", " "))
            return
    print("OK")


if __name__ == "__main__":
    main()
