"""Credentials against moto servers that check them: anonymous, keys, wrong keys, keys from the environment, revoked keys; both backends.

Two servers, because moto cannot do both on one: with authentication on
(``s3_auth_server``) it checks every request's signature and the IAM
policy of its key, but answers an unsigned request with an internal error
(it reads the ``Authorization`` header unconditionally), so anonymous reads
are tried on ``s3_server``, which checks no signature but does check bucket
policies and ACLs for unsigned requests.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest
import zarr
from conftest import enable_moto_auth, s3_options
from zarr.storage import FsspecStore

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, ZarrsampleError, open_image

BACKENDS = ["zarr", "tensorstore"]
DATA = np.random.default_rng(13).integers(0, 60000, (48, 64), dtype=np.uint16)
READ_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}
ALL_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def write_array(url, options, acl="private"):
    options = {**options, "s3_additional_kwargs": {"ACL": acl}}
    zarr.create_array(store=FsspecStore.from_url(url, storage_options=options), data=DATA, chunks=(16, 16))


@pytest.fixture(scope="module")
def private(s3_auth_server):
    """The endpoint of a server checking signatures, its private bucket's array URL, and IAM users' keys."""
    import boto3

    admin = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1",
             "endpoint_url": s3_auth_server}
    iam = boto3.client("iam", **admin)
    keys = {}
    for user, policy in [("reader", READ_POLICY), ("admin", ALL_POLICY), ("leaver", READ_POLICY)]:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=json.dumps(policy))
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    boto3.client("s3", **admin).create_bucket(Bucket="private")
    write_array("s3://private/image.zarr", s3_options(s3_auth_server))
    enable_moto_auth(s3_auth_server)  # from now on, moto's IAM keys only
    return s3_auth_server, "s3://private/image.zarr", {
        user: s3_options(s3_auth_server, key["AccessKeyId"], key["SecretAccessKey"]) for user, key in keys.items()}


@pytest.fixture(scope="module")
def public(s3_server):
    """URLs of an array in a public-read bucket and of one in a private bucket (anonymous requests checked)."""
    import boto3

    endpoint = s3_server["client_kwargs"]["endpoint_url"]
    s3 = boto3.client("s3", aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1", endpoint_url=endpoint)
    for name, acl in [("public", "public-read"), ("closed", "private")]:
        s3.create_bucket(Bucket=name, ACL=acl)
        write_array(f"s3://{name}/image.zarr", s3_server, acl)  # moto checks HEAD requests against ACLs only
    s3.put_bucket_policy(Bucket="public", Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": ["arn:aws:s3:::public", "arn:aws:s3:::public/*"]}]}))
    anonymous = {"anon": True, "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    return "s3://public/image.zarr", "s3://closed/image.zarr", anonymous


def one_line(exc_info, url):
    text = str(exc_info.value)
    assert "\n" not in text and url in text, text
    return text


@pytest.mark.parametrize("backend", BACKENDS)
def test_anonymous_reads_the_public_bucket(public, backend):
    url, _, anonymous = public
    image = open_image(url, axes="YX", storage_options=anonymous, backend=backend)
    if backend == "tensorstore":
        assert image._spec[1]["kvstore"]["aws_credentials"] == {"type": "anonymous"}
    np.testing.assert_array_equal(image.read(), DATA)


@pytest.mark.parametrize("backend", BACKENDS)
def test_anonymous_is_refused_by_a_private_bucket(public, backend):
    _, url, anonymous = public
    with pytest.raises(ZarrsampleError, match=r"^cannot open 's3://closed/image.zarr': access denied") as info:
        open_image(url, axes="YX", storage_options=anonymous, backend=backend)
    one_line(info, url)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_right_keys_read_the_private_bucket_in_every_process(private, backend):
    _, url, options = private
    image = open_image(url, axes="YX", storage_options=options["reader"], backend=backend)
    np.testing.assert_array_equal(image.read(), DATA)
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # the keys travel with the image
        assert pool.apply_async(read_sum, (image,)).get(timeout=120) == int(DATA.astype(np.int64).sum())


def read_sum(image):
    return int(image.read().astype(np.int64).sum())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_wrong_keys_are_refused_in_one_line(private, backend, wrong):
    _, url, options = private
    bad = json.loads(json.dumps(options["reader"]))
    bad[wrong] = "AKIAIOSFODNN7EXAMPLE" if wrong == "key" else "not-the-secret"
    with pytest.raises(ZarrsampleError, match=r"^cannot open 's3://private/image.zarr': access denied") as info:
        open_image(url, axes="YX", storage_options=bad, backend=backend)
    assert bad["secret"] not in one_line(info, url)


_READ_IN_A_NEW_PROCESS = """
import json, sys
import numpy as np
from zarrsample_core import open_image
url, options, backend = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
image = open_image(url, axes="YX", storage_options=options, backend=backend)
print(int(image.read().astype(np.int64).sum()))
"""


def read_in_a_new_process(url, options, backend):
    """The pixel sum a new Python process reads (its environment is this one's)."""
    return subprocess.run([sys.executable, "-c", _READ_IN_A_NEW_PROCESS, url, json.dumps(options), backend],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def clean_aws_environment(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch


@pytest.mark.parametrize("backend", BACKENDS)
def test_keys_from_the_environment(private, backend, clean_aws_environment):
    endpoint, url, options = private
    clean_aws_environment.setenv("AWS_ACCESS_KEY_ID", options["reader"]["key"])
    clean_aws_environment.setenv("AWS_SECRET_ACCESS_KEY", options["reader"]["secret"])
    where = {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}  # no keys given
    done = read_in_a_new_process(url, where, backend)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == int(DATA.astype(np.int64).sum())
    clean_aws_environment.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")  # and the environment's keys are checked
    refused = read_in_a_new_process(url, where, backend)
    assert refused.returncode == 1 and "cannot open 's3://private/image.zarr': access denied" in refused.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_keys_of_a_named_profile(private, backend, clean_aws_environment, tmp_path):
    endpoint, url, options = private
    (tmp_path / "no-credentials").write_text(
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wrong\n"
        f"[slides]\naws_access_key_id = {options['reader']['key']}\n"
        f"aws_secret_access_key = {options['reader']['secret']}\n")
    where = {"profile": "slides", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    done = read_in_a_new_process(url, where, backend)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == int(DATA.astype(np.int64).sum())
    refused = read_in_a_new_process(url, {**where, "profile": "default"}, backend)
    assert refused.returncode == 1 and "access denied" in refused.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_key_revoked_after_opening_fails_the_read_in_one_line(private, backend):
    import boto3

    endpoint, url, options = private
    image = open_image(url, axes="YX", storage_options=options["leaver"], backend=backend)
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(16, spatial_axes="YX"), read_threads=0)
    admin = options["admin"]
    iam = boto3.client("iam", aws_access_key_id=admin["key"], aws_secret_access_key=admin["secret"],
                       region_name="us-east-1", endpoint_url=endpoint)
    iam.delete_access_key(UserName="leaver", AccessKeyId=options["leaver"]["key"])
    try:
        with pytest.raises(ZarrsampleError) as info:
            ds[0]
        text = one_line(info, url)
        assert ("InvalidAccessKeyId" in text) if backend == "tensorstore" else ("PermissionError" in text)
    finally:  # the other backend's case revokes it again
        new = iam.create_access_key(UserName="leaver")["AccessKey"]
        options["leaver"].update(key=new["AccessKeyId"], secret=new["SecretAccessKey"])


def test_the_command_line_says_access_denied_in_one_line(private):
    _, url, options = private
    bad = {**options["reader"], "secret": "not-the-secret"}
    done = subprocess.run([sys.executable, "-m", "zarrsample_core", "info", url, "--storage-options", json.dumps(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("zarrsample: error: cannot open 's3://private/image.zarr': access denied")
