"""moto's server for labctl's tests, authorizing S3 requests as AWS does.

moto 5.2 authorizes an S3 request by its operation's name (`s3:ListObjectsV2`,
`s3:HeadObject`) where AWS checks the IAM action (`s3:ListBucket`, `s3:GetObject`), so a
student's policy that works on AWS is refused here once IAM is enforced. The operations
whose IAM action has another name are mapped to it
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html; a copy
is authorized as a PutObject of its destination);
then moto's own server runs, with the same arguments as `moto_server`.
"""

import sys

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

if __name__ == "__main__":
    sys.exit(main())
