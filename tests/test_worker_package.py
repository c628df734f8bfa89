"""`bucket-relay worker package`: an R2 customer with Node.js and no Rust deploys the worker. The
folder it writes holds the prebuilt bundle (the bytes the workerd tests run), a wrangler.toml made
from the repository's with the integration's vars and no build step, and a README; the real
`wrangler` CLI (npm, pinned) accepts it with `deploy --dry-run` on a PATH without cargo."""

import json
import shutil
import subprocess
import tomllib

from relay_contract import ROOT
from support import R2_ACCOUNT, RELAY_BIN

NODE_BIN = ROOT / "tests" / "worker" / "node_modules" / ".bin"
BUILD = ROOT / "worker" / "build"


def test_a_packaged_worker_deploys_with_node_alone_and_holds_no_secret(receiver, tmp_path):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--suffix", ".pdf",
                              "--suffix=-final.csv", "--cloudflare-plan", "free")
    out = tmp_path / "worker"
    packaged = receiver.cli("worker", "package", created["id"], "--out", str(out), "--bundle", str(BUILD),
                            "--receiver-url", "https://relay.example.com")
    assert packaged["bundle_version"].startswith("0.1.0+") and "warning" not in packaged

    for name in ("index.js", "index_bg.wasm", "worker/shim.mjs"):
        assert (out / "bundle" / name).read_bytes() == (BUILD / name).read_bytes(), "the tested bytes"
    for path in out.rglob("*"):
        if path.is_file():
            assert created["secret"].encode() not in path.read_bytes(), f"the secret is in {path}"

    config = tomllib.loads((out / "wrangler.toml").read_text())
    template = tomllib.loads((ROOT / "wrangler.toml").read_text())
    assert "build" not in config and config["main"] == "bundle/index.js"
    assert config["queues"] == template["queues"], "the same queues, consumers and settings"
    assert config["vars"] == {
        "RECEIVER_URL": "https://relay.example.com",
        "INTEGRATION_ID": created["id"],
        "KEY_SUFFIXES": ".pdf,-final.csv",
        "MAX_RETRY_DELAY_SECONDS": "3600",
        "WORKER_BUNDLE": packaged["bundle_version"],
    }
    readme = (out / "README.md").read_text()
    assert "Node.js (npx) alone" in readme and "--message-retention-period-secs 86400" in readme
    assert "--suffix=-final.csv" in readme, "a suffix starting with - stays the flag's value"

    # A customer's machine: Node and the pinned wrangler, no cargo, no Cloudflare account.
    path = f"{NODE_BIN}:/usr/bin:/bin"
    assert shutil.which("cargo", path=path) is None and shutil.which("node", path=path)
    home = tmp_path / "home"
    home.mkdir()
    deploy = subprocess.run([str(NODE_BIN / "wrangler"), "deploy", "--dry-run", "--outdir", str(tmp_path / "dist")],
                            cwd=out, capture_output=True, text=True, timeout=120,
                            env={"PATH": path, "HOME": str(home), "CI": "true", "WRANGLER_SEND_METRICS": "false"})
    output = deploy.stdout + deploy.stderr
    assert deploy.returncode == 0, output
    assert "WARNING" not in output.upper().replace("WRANGLER", ""), output
    assert f'env.WORKER_BUNDLE ("{packaged["bundle_version"]}")' in output
    # What wrangler would upload is the tested bundle itself, not a re-bundling of it.
    for name in ("index.js", "index_bg.wasm"):
        assert (tmp_path / "dist" / name).read_bytes() == (BUILD / name).read_bytes(), name


def test_only_an_r2_integration_has_a_worker(receiver, tmp_path):
    s3 = receiver.create("s3", "docs")
    refused = receiver.cli("worker", "package", s3["id"], "--out", str(tmp_path / "w"), check=False)
    assert refused.returncode == 1 and "forwards an R2 bucket's notifications" in refused.stderr
    r2 = receiver.create("r2", "uploads")
    missing = receiver.cli("worker", "package", r2["id"], "--out", str(tmp_path / "w"),
                           "--bundle", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "worker-build --profile worker-release" in missing.stderr


def test_create_writes_the_worker_folder_with_the_integration(receiver, tmp_path):
    out = tmp_path / "worker"
    receiver.env["RELAY_WORKER_BUNDLE"] = str(BUILD)
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--worker-out", str(out))
    assert created["worker_package"]["out"] == str(out)
    config = tomllib.loads((out / "wrangler.toml").read_text())
    assert config["vars"]["INTEGRATION_ID"] == created["id"]
    assert config["vars"]["WORKER_BUNDLE"] == created["worker_package"]["bundle_version"]
    assert created["secret"].encode() not in (out / "wrangler.toml").read_bytes()
    # Without a bundle to write, nothing is created.
    receiver.env["RELAY_WORKER_BUNDLE"] = str(tmp_path / "nowhere")
    before = receiver.cli("integrations", "list")
    refused = receiver.cli("integrations", "create", "--provider", "r2", "--bucket", "photos",
                           "--worker-out", str(tmp_path / "other"), check=False)
    assert refused.returncode == 1 and "worker-build --profile worker-release" in refused.stderr
    assert receiver.cli("integrations", "list") == before
