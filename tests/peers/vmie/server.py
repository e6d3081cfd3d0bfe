"""A VM Import/Export test peer: moto 5.2.5's server plus the seven VMIE
actions moto lacks (ImportImage, DescribeImportImageTasks, ImportSnapshot,
DescribeImportSnapshotTasks, CancelImportTask, ExportImage,
DescribeExportImageTasks).

Run it like moto_server: `python server.py -H 127.0.0.1 -p PORT`.

What it checks, as AWS does:
- RoleName (default `vmimport`) must exist in moto's IAM, else the
  synchronous `InvalidParameter: The service role <vmimport> does not exist
  or does not have sufficient permissions for the service to continue`.
- The bucket must exist in moto's S3, else a synchronous
  `InvalidParameter: The given S3 bucket does not exist: B` (AWS's exact
  text for this case is not documented).
- At `validating` the object is read from moto's S3 and checked: VMDK must
  start with `KDMV` and say `createType="streamOptimized"` (else
  `ClientError: Disk validation failed [Unsupported VMDK File Format]`), VHD
  must end with a `conectix` footer, VHDX must start with `vhdxfile`, OVA
  must be a tar whose first member is a `.ovf`, RAW must be non-empty and a
  whole number of 512-byte sectors. A missing object fails with
  `ClientError: Disk validation failed [We do not have access to the given
  resource. Reason 404 Not Found]`.

Tasks advance one status per Describe call: pending → validating →
validated → converting → updating → booting → booted → preparing ami →
completed (ImportImage), pending → validating → converting → completed
(ImportSnapshot). Failures go `deleting` then `deleted` with the
ClientError text. On completion a real moto volume, snapshot and image are
created, so DescribeImages, CopyImage, ModifyImageAttribute and
RunInstances accept the ids.

ExportImage writes the disk that was imported for that image (CopyImage
and RegisterImage from an imported snapshot carry it along) back to
`<S3Prefix><export-ami-id>.<vmdk|vhd|raw>`, converted with qemu-img.

S3 fix: ListParts answers with the `ListPartsResult` root element S3 uses
(moto 5.2.5 says `ListPartsResponse`, which the AWS SDKs reject).

Test hook: a task whose Description contains `kiln-test-fail:MESSAGE`
(MESSAGE up to the end of the description) ends `deleted` with
`ClientError: MESSAGE` at the `converting` step.
"""

import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.responses import EC2Response
from moto.ec2.utils import random_ami_id
from moto.iam.models import iam_backends
from moto.s3.models import s3_backends

IMAGE_STEPS = [
    ("pending", "2"),
    ("validating", "10"),
    ("validated", "19"),
    ("converting", "28"),
    ("updating", "39"),
    ("booting", "59"),
    ("booted", "68"),
    ("preparing ami", "76"),
]
SNAPSHOT_STEPS = [("pending", "3"), ("validating", "10"), ("converting", "40")]
EXPORT_STEPS = [("pending", "0"), ("validating", "10"), ("updating", "21"), ("converting", "60")]

FAIL_HOOK = "kiln-test-fail:"
# The test fixture gives a folder it removes after killing this server.
WORKDIR = os.environ.get("KILN_VMIE_WORKDIR") or tempfile.mkdtemp(prefix="kiln-vmie-peer-")

# (account, image or snapshot id) -> (path of the imported disk, qemu format)
DISKS = {}
# task id -> task dict; ids are random, so one table serves every region
TASKS = {}


def hex17():
    return "%017x" % random.getrandbits(68)


def s3_backend(account):
    return s3_backends[account]["aws"]


def fail(code, message):
    raise EC2ClientError(code, message)


def check_role(account, role):
    try:
        iam_backends[account]["aws"].get_role(role)
    except Exception:
        fail(
            "InvalidParameter",
            f"The service role <{role}> does not exist or does not have sufficient "
            "permissions for the service to continue",
        )


def check_bucket(account, bucket):
    if not bucket or bucket not in s3_backend(account).buckets:
        fail("InvalidParameter", f"The given S3 bucket does not exist: {bucket}")


def read_object(account, bucket, key):
    try:
        obj = s3_backend(account).get_object(bucket, key)
    except Exception:
        obj = None
    if obj is None:
        return None
    return obj.value


def validate_disk(data, fmt):
    """The ClientError text AWS gives for this disk, or None when it passes."""
    if data is None:
        return "Disk validation failed [We do not have access to the given resource. Reason 404 Not Found]"
    fmt = fmt.lower()
    if fmt == "vmdk":
        head = data[:65536]
        if not head.startswith(b"KDMV") or b'createType="streamOptimized"' not in head:
            return "Disk validation failed [Unsupported VMDK File Format]"
    elif fmt == "vhd":
        if len(data) < 512 or data[-512:-504] != b"conectix":
            return "Disk validation failed [Unsupported VHD File Format]"
        if data[-512 + 60 : -512 + 64] == (4).to_bytes(4, "big"):
            return "Footers not identical"
    elif fmt == "vhdx":
        if not data.startswith(b"vhdxfile"):
            return "Disk validation failed [Unsupported VHDX File Format]"
    elif fmt == "ova":
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                first = tar.next()
            if first is None or not first.name.endswith(".ovf"):
                return "Disk validation failed [Unsupported OVA format]"
        except tarfile.TarError:
            return "Disk validation failed [Unsupported OVA format]"
    elif fmt == "raw":
        if len(data) == 0 or len(data) % 512:
            return "No valid partitions. Not a valid volume."
    else:
        return f"Unsupported disk format {fmt}"
    return None


QEMU_FORMAT = {"vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "raw": "raw"}


def store_disk(data, fmt):
    """Keeps an imported disk as a file; OVA keeps its first disk."""
    fmt = fmt.lower()
    if fmt == "ova":
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar:
                if m.name.endswith(".vmdk"):
                    data = tar.extractfile(m).read()
                    fmt = "vmdk"
                    break
    path = os.path.join(WORKDIR, hex17() + "." + fmt)
    with open(path, "wb") as f:
        f.write(data)
    return path, QEMU_FORMAT[fmt]


def tags_from(spec_list, resource_type):
    out = []
    for spec in spec_list or []:
        if spec.get("ResourceType") == resource_type:
            out.extend(spec.get("Tags", []))
    return out


def disk_size(path, qfmt):
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", qfmt, path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    import json

    return int(json.loads(out)["virtual-size"])


def advance(task, steps, finish):
    """Moves a task one status on (called on each Describe)."""
    if task["Status"] in ("completed", "deleted"):
        return
    if task["Status"] == "deleting":
        task["Status"] = "deleted"
        task.pop("Progress", None)
        return
    idx = task["_step"] + 1
    msg = steps[min(idx, len(steps) - 1)][0]
    if msg == "validating" and "_disk_error" in task:
        return to_deleting(task, task["_disk_error"])
    if msg == "converting" and FAIL_HOOK in task.get("Description", ""):
        return to_deleting(task, task["Description"].split(FAIL_HOOK, 1)[1])
    if idx >= len(steps):
        finish(task)
        task["Status"] = "completed"
        task.pop("StatusMessage", None)
        task.pop("Progress", None)
        return
    task["_step"] = idx
    task["StatusMessage"], task["Progress"] = steps[idx]


def to_deleting(task, message):
    task["Status"] = "deleting"
    task["StatusMessage"] = "ClientError: " + message
    task.pop("Progress", None)


def public(task):
    return {k: v for k, v in task.items() if not k.startswith("_")}


def new_disk_task(self, container, prefix, steps, kind):
    account = self.current_account
    role = self._get_param("RoleName") or "vmimport"
    check_role(account, role)
    bucket_spec = container.get("UserBucket") or {}
    bucket, key = bucket_spec.get("S3Bucket"), bucket_spec.get("S3Key")
    url = container.get("Url")
    if not bucket and url and url.startswith("s3://"):
        bucket, _, key = url[5:].partition("/")
    check_bucket(account, bucket)
    fmt = (container.get("Format") or "").lower()
    if not fmt:
        fail("InvalidParameter", "Parameter disk-image-size=0 has an invalid format")
    data = read_object(account, bucket, key)
    task = {
        "ImportTaskId": f"{prefix}-{hex17()}",
        "Status": "active",
        "StatusMessage": steps[0][0],
        "Progress": steps[0][1],
        "Description": self._get_param("Description") or "",
        "Encrypted": bool(self._get_param("Encrypted")),
        "_step": 0,
        "_kind": kind,
        "_account": account,
        "_region": self.region,
        "_bucket": bucket,
        "_key": key,
        "_format": fmt,
    }
    if self._get_param("KmsKeyId"):
        task["KmsKeyId"] = self._get_param("KmsKeyId")
    err = validate_disk(data, fmt)
    if err:
        task["_disk_error"] = err
    else:
        task["_data"] = (data, fmt)
    detail = {
        "DiskImageSize": float(len(data or b"")),
        "Format": fmt.upper(),
        "UserBucket": {"S3Bucket": bucket, "S3Key": key},
        "Status": "active",
    }
    return task, detail


def import_image(self):
    containers = self._get_param("DiskContainers", [])
    if not containers:
        fail("InvalidParameter", "DiskContainer is required")
    task, detail = new_disk_task(self, containers[0], "import-ami", IMAGE_STEPS, "image")
    for k in ("Architecture", "Platform", "LicenseType", "BootMode", "UsageOperation"):
        v = self._get_param(k)
        if v:
            task[k] = v
    if task.get("LicenseType") and task.get("UsageOperation"):
        fail("InvalidParameter", "LicenseType and UsageOperation cannot both be specified")
    if task.get("Platform", "").lower() == "linux" and task.get("LicenseType", "BYOL") != "BYOL":
        fail("InvalidParameter", "Linux imports support only LicenseType BYOL")
    task["SnapshotDetails"] = [detail]
    task["Tags"] = tags_from(self._get_param("TagSpecifications", []), "import-image-task")
    TASKS[task["ImportTaskId"]] = task
    return ActionResult(public(task))


def finish_image(task):
    backend = ec2_backends[task["_account"]][task["_region"]]
    data, fmt = task["_data"]
    path, qfmt = store_disk(data, fmt)
    boot = task.get("BootMode", "legacy-bios")
    ami = Ami(
        backend,
        random_ami_id(),
        name=f"{task['ImportTaskId']}",
        description=task.get("Description") or f"AMI imported by {task['ImportTaskId']}",
        virtualization_type="hvm",
        architecture=task.get("Architecture", "x86_64"),
        root_device_type="ebs",
        root_device_name="/dev/sda1",
        boot_mode=boot,
        region_name=task["_region"] + "a",
        snapshot_description=f"Created by AWS-VMImport service for {task['ImportTaskId']}",
    )
    backend.amis[ami.id] = ami
    DISKS[(task["_account"], ami.id)] = (path, qfmt)
    task["ImageId"] = ami.id
    d = task["SnapshotDetails"][0]
    d["SnapshotId"] = ami.ebs_snapshot.id
    d["Status"] = "completed"
    d["DeviceName"] = "/dev/sda1"


def describe_import_image_tasks(self):
    ids = self._get_param("ImportTaskIds", [])
    out = []
    for tid, task in TASKS.items():
        if task["_kind"] != "image" or task["_account"] != self.current_account:
            continue
        if ids and tid not in ids:
            continue
        advance(task, IMAGE_STEPS, finish_image)
        out.append(public(task))
    missing = [i for i in ids if i not in TASKS]
    if missing:
        fail("InvalidConversionTaskId.Malformed", f"The task ID {missing[0]} is invalid")
    return ActionResult({"ImportImageTasks": out})


def import_snapshot(self):
    container = self._get_param("DiskContainer") or {}
    task, detail = new_disk_task(self, container, "import-snap", SNAPSHOT_STEPS, "snapshot")
    if task["_format"] == "ova":
        fail("InvalidParameter", "OVA is not a valid format for ImportSnapshot")
    task["SnapshotTaskDetail"] = detail
    task["Tags"] = tags_from(self._get_param("TagSpecifications", []), "import-snapshot-task")
    TASKS[task["ImportTaskId"]] = task
    return ActionResult(public(task))


def finish_snapshot(task):
    backend = ec2_backends[task["_account"]][task["_region"]]
    data, fmt = task["_data"]
    path, qfmt = store_disk(data, fmt)
    gib = max(1, -(-disk_size(path, qfmt) // (1 << 30)))
    vol = backend.create_volume(size=gib, zone_name=task["_region"] + "a")
    snap = backend.create_snapshot(vol.id, f"Created by AWS-VMImport service for {task['ImportTaskId']}")
    backend.delete_volume(vol.id)
    DISKS[(task["_account"], snap.id)] = (path, qfmt)
    d = task["SnapshotTaskDetail"]
    d["SnapshotId"] = snap.id
    d["Status"] = "completed"


def describe_import_snapshot_tasks(self):
    ids = self._get_param("ImportTaskIds", [])
    out = []
    for tid, task in TASKS.items():
        if task["_kind"] != "snapshot" or task["_account"] != self.current_account:
            continue
        if ids and tid not in ids:
            continue
        advance(task, SNAPSHOT_STEPS, finish_snapshot)
        # the snapshot task reports its state inside SnapshotTaskDetail
        detail = dict(task["SnapshotTaskDetail"])
        detail["Status"] = task["Status"]
        if "StatusMessage" in task:
            detail["StatusMessage"] = task["StatusMessage"]
        if "Progress" in task:
            detail["Progress"] = task["Progress"]
        out.append({"ImportTaskId": tid, "Description": task["Description"], "SnapshotTaskDetail": detail, "Tags": task["Tags"]})
    missing = [i for i in ids if i not in TASKS]
    if missing:
        fail("InvalidConversionTaskId.Malformed", f"The task ID {missing[0]} is invalid")
    return ActionResult({"ImportSnapshotTasks": out})


def cancel_import_task(self):
    tid = self._get_param("ImportTaskId")
    task = TASKS.get(tid)
    if task is None or task["_account"] != self.current_account:
        fail("InvalidConversionTaskId.Malformed", f"The task ID {tid} is invalid")
    if task["Status"] != "active":
        fail("IncorrectState", f"The import task {tid} cannot be cancelled in state {task['Status']}")
    reason = self._get_param("CancelReason") or "User initiated task cancelation"
    to_deleting(task, reason)
    task["StatusMessage"] = reason
    return ActionResult({"ImportTaskId": tid, "PreviousState": "active", "State": "deleting"})


def export_image(self):
    account = self.current_account
    image_id = self._get_param("ImageId")
    fmt = (self._get_param("DiskImageFormat") or "").lower()
    if fmt not in ("vmdk", "vhd", "raw"):
        fail("InvalidParameter", f"Invalid DiskImageFormat {fmt!r}: use VMDK, RAW or VHD")
    loc = self._get_param("S3ExportLocation") or {}
    role = self._get_param("RoleName") or "vmimport"
    check_role(account, role)
    check_bucket(account, loc.get("S3Bucket"))
    self.ec2_backend.describe_images(ami_ids=[image_id])  # InvalidAMIID.NotFound
    if (account, image_id) not in DISKS:
        fail(
            "NotExportable",
            f"The image ID ({image_id}) provided is not exportable: it was not imported through VM Import/Export",
        )
    task = {
        "ExportImageTaskId": f"export-ami-{hex17()}",
        "ImageId": image_id,
        "Description": self._get_param("Description") or "",
        "Status": "active",
        "StatusMessage": EXPORT_STEPS[0][0],
        "Progress": EXPORT_STEPS[0][1],
        "S3ExportLocation": {"S3Bucket": loc.get("S3Bucket"), "S3Prefix": loc.get("S3Prefix") or ""},
        "Tags": tags_from(self._get_param("TagSpecifications", []), "export-image-task"),
        "_step": 0,
        "_kind": "export",
        "_account": account,
        "_format": fmt,
    }
    TASKS[task["ExportImageTaskId"]] = task
    out = public(task)
    out["DiskImageFormat"] = fmt.upper()
    out["RoleName"] = role
    return ActionResult(out)


def finish_export(task):
    src, qfmt = DISKS[(task["_account"], task["ImageId"])]
    fmt = task["_format"]
    dst = os.path.join(WORKDIR, task["ExportImageTaskId"] + "." + fmt)
    opts = {
        "vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
        "vhd": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
        "raw": ["-O", "raw"],
    }[fmt]
    subprocess.run(["qemu-img", "convert", "-f", qfmt, *opts, src, dst], check=True, capture_output=True)
    with open(dst, "rb") as f:
        data = f.read()
    os.remove(dst)
    loc = task["S3ExportLocation"]
    key = f"{loc['S3Prefix']}{task['ExportImageTaskId']}.{fmt}"
    s3_backend(task["_account"]).put_object(loc["S3Bucket"], key, data)


def describe_export_image_tasks(self):
    ids = self._get_param("ExportImageTaskIds", [])
    out = []
    for tid, task in TASKS.items():
        if task["_kind"] != "export" or task["_account"] != self.current_account:
            continue
        if ids and tid not in ids:
            continue
        advance(task, EXPORT_STEPS, finish_export)
        out.append(public(task))
    missing = [i for i in ids if i not in TASKS]
    if missing:
        fail("InvalidExportImageTaskId.NotFound", f"The export image task ID '{missing[0]}' does not exist")
    return ActionResult({"ExportImageTasks": out})


def patch_copy_and_register():
    """CopyImage and RegisterImage (from an imported snapshot) keep the disk."""
    from moto.ec2.models.amis import AmiBackend

    original_copy = AmiBackend.copy_image

    def copy_image(self, source_image_id, source_region, name=None, description=None):
        ami = original_copy(self, source_image_id, source_region, name, description)
        disk = DISKS.get((self.account_id, source_image_id))
        if disk:
            DISKS[(self.account_id, ami.id)] = disk
        return ami

    AmiBackend.copy_image = copy_image

    original_register = EC2Response.register_image

    def register_image(self):
        result = original_register(self)
        image_id = result.result["ImageId"]
        for bdm in self._get_param("BlockDeviceMappings", []) or []:
            snap = (bdm.get("Ebs") or {}).get("SnapshotId")
            disk = DISKS.get((self.current_account, snap))
            if disk:
                DISKS[(self.current_account, image_id)] = disk
                break
        return result

    EC2Response.register_image = register_image


def patch_list_parts_root():
    """moto 5.2.5 answers ListParts with a `ListPartsResponse` root element;
    S3 (and the AWS SDKs, which reject anything else) use `ListPartsResult`."""
    from moto.core.serialize import S3Serializer

    original = S3Serializer._serialize_body

    def serialize_body(self, body):
        if list(body.keys()) == ["ListPartsResponse"]:
            body = {"ListPartsResult": body["ListPartsResponse"]}
        return original(self, body)

    S3Serializer._serialize_body = serialize_body


def install():
    for fn in (
        import_image,
        describe_import_image_tasks,
        import_snapshot,
        describe_import_snapshot_tasks,
        cancel_import_task,
        export_image,
        describe_export_image_tasks,
    ):
        setattr(EC2Response, fn.__name__, fn)
    patch_copy_and_register()
    patch_list_parts_root()


if __name__ == "__main__":
    install()
    from moto.server import main

    main(sys.argv[1:])
