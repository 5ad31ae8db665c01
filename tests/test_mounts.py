"""The mount table parser and the plan it drives: pure functions, real samples."""

from __future__ import annotations

import anyio
import pytest

from asyncreload import _platform
from asyncreload._types import Backend
from asyncreload._watch import mounts
from asyncreload._watch.mounts import (
    Mount,
    MountTable,
    RereadTable,
    cache_delay,
    parse_mountinfo,
    poll_reason,
    read_mounts,
    unescape,
)
from asyncreload._watch.plan import plan

# Lines as the kernel writes them, from the machines named.
DEBIAN_VM = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
28 27 0:25 / /mnt/tools ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k
42 27 0:39 / /tmp/x/M rw,nosuid,nodev,relatime - fuse.bindfs /tmp/x/B rw,user_id=0,group_id=0,default_permissions,allow_other
"""  # noqa: E501

# Optional fields ("shared:1", "master:2") between the mount options and the separator.
UBUNTU_DESKTOP = """\
29 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
112 29 0:58 / /home/ann/remote rw,nosuid,nodev,relatime shared:62 - fuse.sshfs ann@build:/srv rw,user_id=1000,group_id=1000
125 29 0:61 / /media/ann/My\\040Drive rw,nosuid,nodev,relatime shared:70 master:3 - fuseblk /dev/sdb1 rw,user_id=0,group_id=0,default_permissions,allow_other,blksize=4096
130 29 0:63 / /net/home rw,relatime shared:80 - nfs4 fs1:/export/home rw,vers=4.2,rsize=1048576,hard,proto=tcp
131 29 0:64 / /mnt/smb rw,relatime shared:81 - cifs //nas/share rw,vers=3.1.1,cache=strict
"""  # noqa: E501

WSL2 = """\
64 69 0:52 / /mnt/c rw,noatime - 9p C:\\134 rw,dirsync,aname=drvfs;path=C:\\;uid=1000;gid=1000
69 59 8:32 / / rw,relatime - ext4 /dev/sdc rw,discard,errors=remount-ro,data=ordered
"""

DOCKER_DESKTOP = """\
812 700 0:160 / / rw,relatime master:398 - overlay overlay rw,lowerdir=/var/lib/l/1,upperdir=/u,workdir=/w
830 812 0:171 /host_mnt/Users/ann/app /app rw,relatime - fuse.grpcfuse grpcfuse rw,user_id=0,group_id=0,allow_other,max_read=1048576
831 812 0:172 /Users/ann/web /web rw,relatime - fakeowner /run/host_mark/Users rw
832 812 0:173 / /data rw,relatime - virtiofs mount0 rw
"""  # noqa: E501


def test_parses_a_real_table() -> None:
    mounts = parse_mountinfo(DEBIAN_VM)
    assert [m.mount_point for m in mounts] == ["/proc", "/dev", "/", "/mnt/tools", "/tmp/x/M"]
    fuse = mounts[-1]
    assert (fuse.mount_id, fuse.parent_id, fuse.fstype, fuse.source) == (
        42,
        27,
        "fuse.bindfs",
        "/tmp/x/B",
    )


def test_optional_fields_and_octal_escapes() -> None:
    mounts = {m.mount_point: m for m in parse_mountinfo(UBUNTU_DESKTOP)}
    assert mounts["/media/ann/My Drive"].fstype == "fuseblk"
    assert mounts["/home/ann/remote"].source == "ann@build:/srv"
    assert mounts["/net/home"].fstype == "nfs4"
    wsl = parse_mountinfo(WSL2)[0]
    assert (wsl.mount_point, wsl.fstype, wsl.source) == ("/mnt/c", "9p", "C:\\")


def test_bad_lines_are_skipped_not_fatal() -> None:
    text = "garbage\n\n1 2 3\n" + DEBIAN_VM + "27 1 254:0 / / rw - \n"
    assert len(parse_mountinfo(text)) == 5


def test_unescape_all_kernel_escapes() -> None:
    assert unescape(r"/a\040b\011c\012d\134e") == "/a b\tc\nd\\e"
    assert unescape("/plain") == "/plain"


@pytest.mark.parametrize(
    ("fstype", "polled"),
    [
        ("fuse", True),
        ("fuse.sshfs", True),
        ("fuse.bindfs", True),
        ("fuse.rclone", True),
        ("fuse.gcsfuse", True),
        ("fuse.s3fs", True),
        ("fuse.grpcfuse", True),
        ("fuseblk", True),
        ("nfs", True),
        ("nfs4", True),
        ("cifs", True),
        ("smb3", True),
        ("smbfs", True),
        ("9p", True),
        ("virtiofs", True),
        ("vboxsf", True),
        ("ceph", True),
        ("glusterfs", True),
        ("afs", True),
        ("davfs", True),
        ("fakeowner", True),
        ("osxfs", True),
        ("ext4", False),
        ("xfs", False),
        ("btrfs", False),
        ("tmpfs", False),
        ("overlay", False),
        ("zfs", False),
    ],
)
def test_which_file_systems_are_polled(fstype: str, polled: bool) -> None:
    assert (poll_reason(fstype) is not None) is polled


def test_read_mounts_reads_this_machine() -> None:
    mounts = read_mounts()
    assert any(m.mount_point == "/" for m in mounts)


def _backends(targets: list) -> dict[str, Backend]:  # type: ignore[type-arg]
    return {t.path: t.backend for t in targets}


def test_local_tree_with_a_fuse_mount_three_levels_down() -> None:
    mounts = parse_mountinfo(UBUNTU_DESKTOP) + [
        Mount(200, 29, "/home/ann/proj/a/b/share", "fuse.sshfs", "h:/x")
    ]
    targets = plan(["/home/ann/proj"], mounts)
    assert _backends(targets) == {
        "/home/ann/proj": Backend.EVENTS,
        "/home/ann/proj/a/b/share": Backend.STAT,
    }
    local = targets[0]
    assert local.excludes == ("/home/ann/proj/a/b/share",)
    assert "ext4" in local.reason
    assert "sshfs" in targets[1].reason
    assert targets[1].fstype == "fuse.sshfs"


def test_roots_on_network_mounts_are_polled() -> None:
    targets = plan(["/mnt/c/Users/ann/app"], parse_mountinfo(WSL2))
    assert _backends(targets) == {"/mnt/c/Users/ann/app": Backend.STAT}
    docker = plan(["/app", "/web", "/data", "/srv"], parse_mountinfo(DOCKER_DESKTOP))
    assert _backends(docker) == {
        "/app": Backend.STAT,
        "/web": Backend.STAT,
        "/data": Backend.STAT,
        "/srv": Backend.EVENTS,
    }


def test_overrides_win_and_the_most_specific_wins() -> None:
    mounts = parse_mountinfo(UBUNTU_DESKTOP)
    targets = plan(
        ["/home/ann"],
        mounts,
        poll=["/home/ann/vendor", "/home/ann/remote/local/deeper"],
        events=["/home/ann/remote/local"],
    )
    assert _backends(targets) == {
        "/home/ann": Backend.EVENTS,
        "/home/ann/vendor": Backend.STAT,
        "/home/ann/remote": Backend.STAT,
        "/home/ann/remote/local": Backend.EVENTS,
        "/home/ann/remote/local/deeper": Backend.STAT,
    }
    by_path = {t.path: t for t in targets}
    assert set(by_path["/home/ann"].excludes) == {"/home/ann/vendor", "/home/ann/remote"}
    assert by_path["/home/ann/remote"].excludes == ("/home/ann/remote/local",)
    assert by_path["/home/ann/vendor"].reason == "override: --poll /home/ann/vendor"


def test_force_polling_everywhere_but_events_override_still_wins() -> None:
    mounts = parse_mountinfo(UBUNTU_DESKTOP)
    targets = plan(["/home/ann", "/srv"], mounts, force_polling=True, events=["/srv/fast"])
    assert _backends(targets) == {
        "/home/ann": Backend.STAT,
        "/srv": Backend.STAT,
        "/srv/fast": Backend.EVENTS,
    }


def test_nested_mounts_with_the_same_backend_are_not_split() -> None:
    mounts = parse_mountinfo(UBUNTU_DESKTOP) + [Mount(300, 29, "/home/ann/p/tmp", "tmpfs", "t")]
    assert _backends(plan(["/home/ann/p"], mounts)) == {"/home/ann/p": Backend.EVENTS}


def test_roots_inside_other_roots_are_covered() -> None:
    targets = plan(["/srv/app/src", "/srv/app", "/srv/app/src/x"], parse_mountinfo(DEBIAN_VM))
    assert [t.path for t in targets] == ["/srv/app"]


def test_no_mount_table_means_events_plus_overrides() -> None:
    targets = plan(["/Users/ann/app"], [], poll=["/Users/ann/app/share"])
    assert _backends(targets) == {
        "/Users/ann/app": Backend.EVENTS,
        "/Users/ann/app/share": Backend.STAT,
    }


def test_the_fuse_mount_itself_as_root_and_a_sibling_prefix() -> None:
    # "/tmp/x/M2" shares a prefix with the mount "/tmp/x/M" but is not inside it.
    targets = plan(["/tmp/x/M", "/tmp/x/M2"], parse_mountinfo(DEBIAN_VM))
    assert _backends(targets) == {"/tmp/x/M": Backend.STAT, "/tmp/x/M2": Backend.EVENTS}


CACHED = """\
112 29 0:58 / /home/ann/remote rw,nosuid,nodev,relatime shared:62 - fuse.sshfs ann@build:/srv rw,user_id=1000,group_id=1000
113 29 0:59 / /mnt/b rw,relatime - fuse.bindfs /srv/b rw,user_id=0,group_id=0,default_permissions
114 29 0:60 / /mnt/gd rw,relatime - fuse.rclone gdrive: rw,user_id=0,group_id=0
130 29 0:63 / /net/home rw,relatime shared:80 - nfs4 fs1:/export/home rw,vers=4.2,rsize=1048576,hard,proto=tcp
131 29 0:64 / /net/fast rw,relatime - nfs fs2:/x rw,vers=3,acregmin=0,acregmax=0,acdirmin=0,acdirmax=0,hard
132 29 0:65 / /net/noac rw,relatime - nfs4 fs2:/y rw,sync,vers=4.2,noac,hard
133 29 0:66 / /net/tuned rw,relatime - nfs4 fs2:/z rw,vers=4.2,acregmin=10,acregmax=20,acdirmin=5,acdirmax=20
140 29 0:70 / /mnt/smb rw,relatime - cifs //nas/share rw,vers=3.1.1,cache=strict,actimeo=1
141 29 0:71 / /mnt/smb0 rw,relatime - cifs //nas/share rw,vers=3.1.1,cache=strict,actimeo=0
142 29 0:72 / /mnt/smb5 rw,relatime - smb3 //nas/s rw,vers=3.1.1,acdirmax=30,acregmax=5
150 29 0:73 / /data rw,relatime - ext4 /dev/sdb1 rw
"""  # noqa: E501


def test_the_caches_that_delay_what_stat_sees() -> None:
    delay = {m.mount_point: cache_delay(m) for m in parse_mountinfo(CACHED)}
    sshfs = delay["/home/ann/remote"]
    assert sshfs is not None and "20 s by default" in sshfs and "-o dir_cache=no" in sshfs
    bindfs = delay["/mnt/b"]
    assert bindfs is not None and "up to 1 s late" in bindfs
    assert "-o attr_timeout=0,entry_timeout=0" in bindfs
    rclone = delay["/mnt/gd"]
    assert rclone is not None and "--dir-cache-time" in rclone
    nfs = delay["/net/home"]  # the kernel shows the defaults by leaving them out
    assert nfs is not None and "3-60 s late" in nfs and "noac (or actimeo=0)" in nfs
    assert "new and deleted files 30-60 s" in nfs
    assert delay["/net/fast"] is None and delay["/net/noac"] is None
    tuned = delay["/net/tuned"]
    assert tuned is not None and "10-20 s late" in tuned and "5-20 s" in tuned
    assert delay["/mnt/smb"] == (
        "SMB caches attributes for 1 s (actimeo=1): a change made elsewhere shows up to that "
        "late; mount with actimeo=0 to see it at once"
    )
    assert delay["/mnt/smb0"] is None
    smb5 = delay["/mnt/smb5"]
    assert smb5 is not None and "for 30 s" in smb5
    assert delay["/data"] is None


def test_the_super_options_are_parsed() -> None:
    mount = parse_mountinfo(UBUNTU_DESKTOP)[3]
    assert mount.options == "rw,vers=4.2,rsize=1048576,hard,proto=tcp"
    assert parse_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda")[0].options == ""


@pytest.mark.anyio
async def test_a_reread_table_returns_when_the_table_differs_and_only_then() -> None:
    # The reader is a list the test changes: the rule alone (the real table: test_watch.py).
    table = [Mount(1, 0, "/", "apfs", "/dev/disk3s1")]
    reread = RereadTable(lambda: list(table), interval=0.01)
    with anyio.move_on_after(0.3) as quiet:
        await reread.changed()
    assert quiet.cancelled_caught  # the same table, read ~30 times: no change
    table.append(Mount(2, 0, "/Volumes/code", "smbfs", "//nas/code", remote=True))
    with anyio.fail_after(10):
        await reread.changed()
    with anyio.move_on_after(0.3) as quiet:
        await reread.changed()
    assert quiet.cancelled_caught  # said once
    table.pop()
    with anyio.fail_after(10):
        await reread.changed()  # the unmount too


@pytest.mark.anyio
async def test_on_windows_a_drive_mapped_after_the_start_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Windows, forced on Linux: the drive list GetDriveTypeW would give (3 fixed, 4 remote),
    # changed by the test as `net use Z: \\nas\code` and `net use Z: /delete` would.
    for flag, value in (("LINUX", False), ("MACOS", False), ("WINDOWS", True)):
        monkeypatch.setattr(_platform, flag, value)
    drives = {"C:\\": 3}
    monkeypatch.setattr(mounts, "_drive_types", lambda: dict(drives))
    monkeypatch.setattr(mounts, "REREAD_INTERVAL", 0.01)
    assert read_mounts() == []
    table = MountTable.open()
    assert isinstance(table, RereadTable)  # no signal for a new drive: the table read again
    with table:
        with anyio.move_on_after(0.3) as quiet:
            await table.changed()
        assert quiet.cancelled_caught
        drives["Z:\\"] = 4
        with anyio.fail_after(10):
            await table.changed()
        assert [(m.mount_point, m.remote) for m in read_mounts()] == [("Z:\\", True)]
        drives["D:\\"] = 5  # a CD-ROM: not in the table, no change to it
        with anyio.move_on_after(0.3) as quiet:
            await table.changed()
        assert quiet.cancelled_caught
        del drives["Z:\\"]
        with anyio.fail_after(10):
            await table.changed()
    assert read_mounts() == []


def test_where_the_os_is_none_of_the_three_there_is_no_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for flag in ("LINUX", "MACOS", "WINDOWS"):
        monkeypatch.setattr(_platform, flag, False)
    assert read_mounts() == []
    assert MountTable.open() is None
