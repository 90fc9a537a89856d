"""scripts/toolforge-deploy against a fake components API on loopback.

Run: python3 -m unittest discover -s tests/ci_config
"""

import json
import os
import subprocess
import sys
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "toolforge-deploy"
TOKEN = "3fae991e-193c-4b86-9f6a-445c0dfd093e"


class FakeComponentsApi:
    """Answers like the components API: the token in the query, a deploy id,
    then the given sequence of statuses, one per GET."""

    def __init__(self, statuses, token=TOKEN):
        self.statuses = list(statuses)
        self.token = token
        self.requests = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self):
                url = urlparse(self.path)
                api.requests.append((self.command, url.path))
                given = parse_qs(url.query).get("token", [""])[0]
                if given != api.token:
                    # The real API echoes the token it was given.
                    self.answer(401, {"detail": f"The token passed '{given}' does not match the tool's token"})
                    return None
                return url.path

            def do_POST(self):
                path = self.authorised()
                if path == "/components/v1/tool/mytool/deployment":
                    self.answer(200, {"data": {"deploy_id": "20261127-120000-abcdefghij", "status": "pending"},
                                      "messages": {"info": [], "warning": ["You are using a beta feature of Toolforge."]}})
                elif path is not None:
                    self.answer(404, {"detail": "Not Found"})

            def do_GET(self):
                path = self.authorised()
                if path == "/components/v1/tool/mytool/deployment/20261127-120000-abcdefghij":
                    status = api.statuses.pop(0) if len(api.statuses) > 1 else api.statuses[0]
                    self.answer(200, {"data": {"deploy_id": "20261127-120000-abcdefghij", "status": status,
                                               "long_status": f"it is {status}"}})
                elif path is not None:
                    self.answer(404, {"detail": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/components/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run(env):
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOOLFORGE_DEPLOY_POLL": "0.01", **env}
    return subprocess.run([sys.executable, str(SCRIPT)], env=full, capture_output=True, text=True, timeout=60)


class DeployJob(unittest.TestCase):
    def api(self, statuses, **kwargs):
        api = FakeComponentsApi(statuses, **kwargs)
        self.addCleanup(api.close)
        return api

    def test_a_deployment_that_succeeds_exits_0_after_following_its_states(self):
        api = self.api(["pending", "running", "successful"])
        result = run({"TOOLFORGE_TOOL": "mytool", "TOOLFORGE_DEPLOY_TOKEN": TOKEN, "TOOLFORGE_API_URL": api.url})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("running", result.stdout)
        self.assertIn("successful: https://mytool.toolforge.org/", result.stdout)
        self.assertEqual(api.requests[0], ("POST", "/components/v1/tool/mytool/deployment"))
        self.assertEqual(sum(1 for method, _ in api.requests if method == "GET"), 3)

    def test_a_failed_deployment_exits_1_with_its_status(self):
        api = self.api(["running", "failed"])
        result = run({"TOOLFORGE_TOOL": "mytool", "TOOLFORGE_DEPLOY_TOKEN": TOKEN, "TOOLFORGE_API_URL": api.url})
        self.assertEqual(result.returncode, 1)
        self.assertIn("ended as failed", result.stderr)

    def test_a_deployment_that_never_ends_times_out(self):
        api = self.api(["running"])
        result = run({"TOOLFORGE_TOOL": "mytool", "TOOLFORGE_DEPLOY_TOKEN": TOKEN, "TOOLFORGE_API_URL": api.url,
                      "TOOLFORGE_DEPLOY_TIMEOUT": "0.2"})
        self.assertEqual(result.returncode, 1)
        self.assertIn("still running", result.stderr)

    def test_a_wrong_token_fails_without_printing_it(self):
        api = self.api(["successful"], token="the-real-token")
        wrong = "wrong-token-0123456789"
        result = run({"TOOLFORGE_TOOL": "mytool", "TOOLFORGE_DEPLOY_TOKEN": wrong, "TOOLFORGE_API_URL": api.url})
        self.assertEqual(result.returncode, 1)
        self.assertIn("HTTP 401", result.stderr)
        self.assertNotIn(wrong, result.stdout + result.stderr)

    def test_missing_settings_exit_2_and_name_them(self):
        result = run({"TOOLFORGE_TOOL": "mytool"})
        self.assertEqual(result.returncode, 2)
        self.assertIn("TOOLFORGE_DEPLOY_TOKEN", result.stderr)


if __name__ == "__main__":
    unittest.main()
