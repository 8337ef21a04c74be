"""A fast OpenAI-style streaming endpoint, to measure the load-test client itself.

Not a model: it answers POST /v1/completions by streaming ``max_tokens`` one-token events as fast as
the socket takes them (chunked SSE, as vLLM sends), after FIRST_DELAY seconds, and records — on the
host's monotonic clock, which every process on the host shares — when each request's first event
left. It also serves /v1/models, /version and a /metrics generation counter, so the load test runs
against it unchanged. A prompt starting with ``fault:`` asks for a misbehaving answer instead
(``fault:500``, ``fault:cut``, ``fault:malformed``, ``fault:short``, ``fault:nousage``,
``fault:stall`` — silent for 30 s after the first event), which the
end-to-end tests use to check that every fault is counted with its reason.

    python lab/benchmarks/sse_server.py --port 8041 --first-delay 0.02 --log first-events.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODEL = "sse-bench"


class Server:
    def __init__(self, first_delay: float, log_path: str) -> None:
        self.first_delay = first_delay
        self.log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 — lives as long as the server
        self.generated = 0
        self.prompts = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "POST" and path == "/v1/completions":
                    await self.stream(json.loads(body), writer)
                else:
                    self.answer(path, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path == "/v1/models":
            payload, kind = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}), "json"
        elif path == "/version":
            payload, kind = json.dumps({"version": "sse-bench"}), "json"
        elif path == "/metrics":
            payload = (f'vllm:generation_tokens_total{{model_name="{MODEL}"}} {float(self.generated)}\n'
                       f'vllm:prompt_tokens_total{{model_name="{MODEL}"}} {float(self.prompts)}\n')
            kind = "plain"
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        data = payload.encode()
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/{kind}\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data)

    async def stream(self, request: dict, writer: asyncio.StreamWriter) -> None:
        tokens = int(request["max_tokens"])
        prompt = str(request.get("prompt", ""))
        prompt_tokens = len(prompt.split())
        fault = prompt.split()[0][len("fault:"):] if prompt.startswith("fault:") else ""
        if fault == "500":
            body = b'{"error": {"message": "injected failure", "code": 500}}'
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(self.first_delay)
        event = b'data: {"object":"text_completion","model":"' + MODEL.encode() + b'","choices":[{"index":0,"text":" x"}]}\n\n'
        chunk = f"{len(event):x}\r\n".encode() + event + b"\r\n"
        writer.write(chunk)
        await writer.drain()
        if self.log:
            self.log.write(json.dumps({"prompt": request.get("prompt"), "first_event_sent": time.perf_counter()}) + "\n")
        if fault == "stall":
            await asyncio.sleep(30)
        if fault == "cut":
            writer.write(chunk)
            await writer.drain()
            writer.transport.abort()
            raise ConnectionError("fault:cut")
        if fault == "malformed":
            bad = b"data: {this is not json\n\n"
            writer.write(f"{len(bad):x}\r\n".encode() + bad + b"\r\n")
        if fault == "short":
            tokens -= 1
        for i in range(1, tokens):
            writer.write(chunk)
            if i % 64 == 0:
                await writer.drain()
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
        finals = [b"[DONE]"] if fault == "nousage" else [json.dumps({"choices": [], "usage": usage}).encode(), b"[DONE]"]
        for last in finals:
            data = b"data: " + last + b"\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        writer.write(b"0\r\n\r\n")
        self.generated += tokens
        self.prompts += prompt_tokens


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-delay", type=float, default=0.02)
    parser.add_argument("--log", default="")
    args = parser.parse_args()
    server = Server(args.first_delay, args.log)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
