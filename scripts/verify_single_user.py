#!/usr/bin/env python3
"""The smoke test of a deployed walsh canister (run through ../verify_single_user.sh).

One user, one prompt: starts a session, continues it until it stops, prints the text, then the
exact token count (the ids the calls returned, checked against the canister's own session_get),
tokens per second and instructions per token (what the canister measured). Talks to the canister
through icp-cli (default) or dfx (WALSH_CLIENT=dfx) and reads their structured output: icp-cli's
`--json` (the reply as Candid text, parsed here) or dfx's `--output json`. Exits 1 on any failure.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DID = os.path.join(ROOT, "canister", "walsh.did")


class CandidText:
    """A parser for Candid values in text form, as icp-cli (candid 0.10) prints them. Records become
    dicts, variants {tag: value}, opt [] or [value] (as dfx's JSON has them), vec lists, numbers
    int or float, blobs bytes."""

    def __init__(self, text):
        self.s, self.i = text, 0

    def ws(self):
        while self.i < len(self.s):
            if self.s[self.i].isspace():
                self.i += 1
            elif self.s.startswith("//", self.i):
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                break

    def peek(self, token):
        self.ws()
        return self.s.startswith(token, self.i)

    def expect(self, token):
        if not self.peek(token):
            raise ValueError(f"expected {token!r} at {self.s[self.i:self.i + 40]!r}")
        self.i += len(token)

    def word(self):
        self.ws()
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] in "_"):
            self.i += 1
        return self.s[start:self.i]

    def args(self):
        self.expect("(")
        values = []
        while not self.peek(")"):
            values.append(self.value())
            if self.peek(","):
                self.expect(",")
        self.expect(")")
        return values

    def annotation(self):
        if self.peek(":"):
            self.expect(":")
            self.word()

    def label(self):
        if self.peek('"'):
            return self.text()
        return self.word()

    def value(self):
        self.ws()
        c = self.s[self.i]
        if c == "(":
            self.expect("(")
            v = self.value()
            self.annotation()
            self.expect(")")
            return v
        if c == '"':
            v = self.text()
            self.annotation()
            return v
        if c in "+-0123456789":
            return self.number()
        w = self.word()
        if w == "record":
            self.expect("{")
            fields, index = {}, 0
            while not self.peek("}"):
                save = self.i
                name = self.label()
                if self.peek("="):
                    self.expect("=")
                    fields[name] = self.value()
                else:  # a tuple field without a label
                    self.i = save
                    fields[str(index)] = self.value()
                index += 1
                if self.peek(";"):
                    self.expect(";")
            self.expect("}")
            return fields
        if w == "variant":
            self.expect("{")
            name = self.label()
            value = None
            if self.peek("="):
                self.expect("=")
                value = self.value()
            if self.peek(";"):
                self.expect(";")
            self.expect("}")
            return {name: value}
        if w == "vec":
            self.expect("{")
            items = []
            while not self.peek("}"):
                items.append(self.value())
                if self.peek(";"):
                    self.expect(";")
            self.expect("}")
            self.annotation()
            return items
        if w == "opt":
            return [self.value()]
        if w == "null":
            self.annotation()
            return []
        if w in ("true", "false"):
            return w == "true"
        if w == "blob":
            return self.text(raw=True)
        if w == "principal":
            return self.text()
        raise ValueError(f"unexpected {w or c!r} at {self.s[self.i:self.i + 40]!r}")

    def number(self):
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] in "+-._"):
            self.i += 1
        token = self.s[start:self.i].replace("_", "")
        self.annotation()
        try:
            return int(token, 0)
        except ValueError:
            return float(token)

    def text(self, raw=False):
        self.expect('"')
        out = bytearray()
        while True:
            c = self.s[self.i]
            self.i += 1
            if c == '"':
                break
            if c != "\\":
                out += c.encode()
                continue
            e = self.s[self.i]
            self.i += 1
            simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", '"': b'"', "'": b"'", "0": b"\0"}
            if e == "u":
                end = self.s.index("}", self.i)
                out += chr(int(self.s[self.i + 1:end], 16)).encode()
                self.i = end + 1
            elif e in "0123456789abcdefABCDEF" and self.s[self.i] in "0123456789abcdefABCDEF":
                out.append(int(self.s[self.i - 1:self.i + 1], 16))
                self.i += 1
            elif e in simple:
                out += simple[e]
            else:
                raise ValueError(f"unknown escape \\{e}")
        return bytes(out) if raw else out.decode("utf-8")


NAT64_FIELDS = {"session", "instructions", "prompt_remaining", "heap_bytes"}


def numbers(value):
    """dfx's JSON writes 64-bit numbers as strings: make those fields ints (text stays text)."""
    if isinstance(value, dict):
        return {k: int(v) if k in NAT64_FIELDS and isinstance(v, str) else numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value


def find_icp():
    if os.environ.get("ICP_BIN"):
        return os.environ["ICP_BIN"]
    found = shutil.which("icp")
    if found:
        return found
    try:
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
        candidate = os.path.join(root, "@icp-sdk/icp-cli-linux-x64/bin/icp")
        if os.path.exists(candidate):
            return candidate
    except OSError:
        pass
    sys.exit("error: icp-cli not found (npm install -g @icp-sdk/icp-cli-linux-x64@1.5.0, or set ICP_BIN); or use dfx: WALSH_CLIENT=dfx")


ANONYMOUS = "2vxsx-fae"
# The identity this script creates in icp-cli's store when the default one is anonymous.
VERIFY_IDENTITY = "walsh-verify"


class Client:
    def __init__(self, tool, canister, network):
        self.tool, self.canister, self.network = tool, canister, network
        if tool == "icp":
            self.program = find_icp()
            if network.startswith("http://") or network.startswith("https://"):
                self.where = ["-n", network, "-k", os.environ.get("ICP_ROOT_KEY", "fetch")]
            else:  # an environment of the project's icp.yaml: local, ic
                self.where = ["-e", network]
        elif tool == "dfx":
            self.program = shutil.which("dfx") or sys.exit("error: dfx not found (WALSH_CLIENT=dfx)")
            self.where = ["--network", network]
        else:
            sys.exit(f"error: WALSH_CLIENT must be icp or dfx, not {tool!r}")
        self.instructions = 0
        self.calls = 0
        self.identity = []
        # Sessions belong to an authenticated caller (the canister answers AnonymousCaller, and
        # refuses anonymous session calls before they run). icp-cli's default identity is the
        # anonymous one: then this script uses (and first creates) an identity of its own.
        principal = self.run_tool(["identity", "principal"] if tool == "icp" else ["identity", "get-principal"]).strip()
        if principal == ANONYMOUS:
            if tool != "icp":
                sys.exit("error: dfx's identity is anonymous, and sessions need an authenticated caller: `dfx identity use NAME` first")
            listed = self.run_tool(["identity", "list"], check=False)
            if VERIFY_IDENTITY not in listed.split():
                self.run_tool(["identity", "new", VERIFY_IDENTITY, "--storage", "plaintext"])
            self.identity = ["--identity", VERIFY_IDENTITY]
            print(f"(icp-cli's identity is anonymous; calling as its identity {VERIFY_IDENTITY!r})", file=sys.stderr)

    def run_tool(self, arguments, check=True):
        done = subprocess.run([self.program, *arguments], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, DO_NOT_TRACK="1"))
        if check and done.returncode != 0:
            sys.exit(f"error: {self.tool} {' '.join(arguments)} exited with {done.returncode}: {done.stderr.strip()[:400]}")
        return done.stdout

    def call(self, method, arg, query=False):
        if self.tool == "icp":
            command = [self.program, "canister", "call", *self.where, *self.identity, self.canister, method, arg, "--json", "--candid", DID]
        else:
            command = [self.program, "canister", "call", *self.where, self.canister, method, arg, "--output", "json"]
        if query:
            command.append("--query")
        env = dict(os.environ, DO_NOT_TRACK="1")
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        if done.returncode != 0:
            detail = " ".join(line.strip() for line in done.stderr.splitlines() if line.strip() and not line.startswith("WARN"))
            sys.exit(f"error: {method}: {self.tool} exited with {done.returncode}: {detail[:600]}")
        try:
            if self.tool == "icp":
                (value,) = CandidText(json.loads(done.stdout)["response_candid"]).args()
            else:
                value = numbers(json.loads(done.stdout))
        except (ValueError, KeyError, TypeError) as e:
            sys.exit(f"error: {method}: cannot read the reply ({e}): {done.stdout[:300]!r}")
        if isinstance(value, dict) and "Err" in value:
            sys.exit(f"error: {method}: the canister answered {json.dumps(value['Err'], default=str)}")
        return value["Ok"] if isinstance(value, dict) and "Ok" in value else value


def main():
    tool = os.environ.get("WALSH_CLIENT", "icp")
    parser = argparse.ArgumentParser(description="Generate N tokens through a session on the deployed walsh canister.")
    parser.add_argument("prompt", nargs="?", default="Once upon a time")
    parser.add_argument("tokens", nargs="?", type=int, default=50)
    parser.add_argument("--canister", default="backend" if tool == "icp" else "walsh_backend",
                        help="name in the project (icp-cli: backend, dfx: walsh_backend) or canister id")
    parser.add_argument("--network", default="local", help="local, ic, or (icp-cli) a URL")
    parser.add_argument("--temperature", type=float, default=float(os.environ.get("TEMPERATURE", "0.8")))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    client = Client(tool, args.canister, args.network)

    seed = "null" if args.seed is None else f"opt ({args.seed} : nat64)"
    request = (f"(record {{ prompt = {json.dumps(args.prompt)}; max_tokens = {args.tokens} : nat32; "
               f"temperature = opt ({args.temperature} : float32); top_k = null; top_p = null; seed = {seed} }}, null)")
    started = time.monotonic()
    chunk = client.call("session_start", request)
    session = chunk["session"]
    ids, calls, instructions = [], 0, 0
    sys.stdout.write(args.prompt)
    while True:
        calls += 1
        instructions += chunk["instructions"]
        ids += chunk["ids"]
        sys.stdout.write(chunk["text"])
        sys.stdout.flush()
        if chunk["stop"]:
            stop = next(iter(chunk["stop"][0]))
            break
        # The second argument (per-call options) is optional for the canister, but icp-cli checks
        # the argument count against the interface; null keeps the controller's budget.
        chunk = client.call("session_continue", f"({session} : nat64, null)")
    seconds = time.monotonic() - started
    view = client.call("session_get", f"({session} : nat64)", query=True)
    client.call("session_cancel", f"({session} : nat64)")
    print()
    if view["ids"] != ids:
        sys.exit(f"error: the calls returned {len(ids)} ids but the canister's session holds {len(view['ids'])}")
    if stop == "MaxTokens" and len(ids) != args.tokens:
        sys.exit(f"error: stopped at max_tokens with {len(ids)} tokens, not {args.tokens}")
    per_token = instructions / max(len(ids), 1)
    print(f"{len(ids)} tokens in {seconds:.2f} s = {len(ids) / seconds:.2f} tokens/s; "
          f"{calls} calls, {instructions} instructions = {per_token / 1e6:.2f} M instructions per token "
          f"(stopped: {stop}; prompt {len(view['prompt_ids'])} tokens; canister {args.canister} via {tool})")


if __name__ == "__main__":
    main()
