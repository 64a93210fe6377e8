"""moto's server for labctl's tests, authorizing S3 requests as AWS does.

moto 5.2 authorizes an S3 request by its operation's name (`s3:ListObjectsV2`,
`s3:HeadObject`) where AWS checks the IAM action (`s3:ListBucket`, `s3:GetObject`), so a
student's policy that works on AWS is refused here once IAM is enforced. The operations
whose IAM action has another name are mapped to it
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html; a copy
is authorized as a PutObject of its destination);
then moto's own server runs, with the same arguments as `moto_server`.

moto 5.2 has no EKS add-on API. `CreateAddon`, `DescribeAddon` and `DeleteAddon` are added
here as EKS's API reference describes them (an add-on per cluster and name, 409
`ResourceInUseException` for a second, 404 `ResourceNotFoundException` for a missing one or
cluster); an add-on is `ACTIVE` once created and goes with its cluster. Nothing runs it.
"""

import sys

import datetime

from moto.core.responses import ActionResult
from moto.eks import urls as eks_urls
from moto.eks.exceptions import ResourceInUseException, ResourceNotFoundException
from moto.eks.responses import EKSResponse
from moto.iam import access_control
from moto.server import main

IAM_ACTION = {
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "CopyObject": "PutObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "DeleteObjects": "DeleteObject",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
}

_init = access_control.S3IAMRequest.__init__


def _init_with_iam_action(self, *args, action, **kwargs):
    _init(self, *args, action=IAM_ACTION.get(action, action), **kwargs)


access_control.S3IAMRequest.__init__ = _init_with_iam_action


# (account, region, cluster) -> {addon name: addon}
ADDONS = {}


def _addons(response, cluster):
    backend = response.eks_backend
    backend.describe_cluster(name=cluster)  # 404 for a missing cluster
    live = {(response.current_account, response.region, name) for name in backend.clusters}
    for key in [k for k in ADDONS if k[:2] == (response.current_account, response.region) and k not in live]:
        del ADDONS[key]
    return ADDONS.setdefault((response.current_account, response.region, cluster), {})


def _error(kind, cluster, addon, message):
    return kind(
        clusterName=cluster,
        nodegroupName=None,
        fargateProfileName=None,
        addonName=addon,
        message=message,
    )


def _missing(cluster, addon):
    return _error(ResourceNotFoundException, cluster, addon, f"No addon: {addon} found in cluster: {cluster}")


def create_addon(self):
    cluster = self._get_param("name")
    name = self._get_param("addonName")
    addons = _addons(self, cluster)
    if name in addons:
        message = f"Addon already exists with name: {name} for cluster: {cluster}"
        raise _error(ResourceInUseException, cluster, name, message)
    now = datetime.datetime.now(datetime.timezone.utc)
    addons[name] = {
        "addonName": name,
        "clusterName": cluster,
        "status": "ACTIVE",
        "addonVersion": self._get_param("addonVersion") or "v1.0.0-eksbuild.1",
        "addonArn": f"arn:aws:eks:{self.region}:{self.current_account}:addon/{cluster}/{name}/0",
        "createdAt": now,
        "modifiedAt": now,
        "serviceAccountRoleArn": self._get_param("serviceAccountRoleArn"),
        "tags": self._get_param("tags") or {},
    }
    return ActionResult({"addon": addons[name]})


def describe_addon(self):
    cluster = self._get_param("name")
    name = self._get_param("addonName")
    addon = _addons(self, cluster).get(name)
    if addon is None:
        raise _missing(cluster, name)
    return ActionResult({"addon": addon})


def delete_addon(self):
    cluster = self._get_param("name")
    name = self._get_param("addonName")
    addon = _addons(self, cluster).pop(name, None)
    if addon is None:
        raise _missing(cluster, name)
    return ActionResult({"addon": dict(addon, status="DELETING")})


EKSResponse.create_addon = create_addon
EKSResponse.describe_addon = describe_addon
EKSResponse.delete_addon = delete_addon
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/addons$"] = eks_urls.response.dispatch
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/addons/(?P<addonName>[^/]+)$"] = eks_urls.response.dispatch

if __name__ == "__main__":
    sys.exit(main())
