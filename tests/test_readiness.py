"""Reading what a guest says about its readiness."""

import pytest


@pytest.mark.parametrize(
    "code, output, expected",
    [
        (0, "status: done\nboot_status_code: enabled-by-generator\nlast_update: Thu, 01 Jan 1970 00:01:05 +0000\ndetail:\nDataSourceNoCloud [seed=/dev/vdb][dsmode=net]\n",
         ("done", ["DataSourceNoCloud [seed=/dev/vdb][dsmode=net]"])),
        (0, "status: running\ntime: Thu, 01 Jan 1970 00:00:30 +0000\ndetail:\nRunning in stage: modules-config\n",
         ("running", ["time: Thu, 01 Jan 1970 00:00:30 +0000", "Running in stage: modules-config"])),
        (1, "status: error\nboot_status_code: enabled-by-generator\ndetail:\n('package-update-upgrade-install', ProcessExecutionError('apt-get update failed'))\n",
         ("error", ["('package-update-upgrade-install', ProcessExecutionError('apt-get update failed'))"])),
        (2, "status: done\nextended_status: degraded done\nboot_status_code: enabled-by-generator\ndetail:\nDataSourceNoCloud\nerrors: []\nrecoverable_errors:\nWARNING:\n\t- growpart failed\n",
         ("done", ["DataSourceNoCloud", "errors: []", "recoverable_errors:", "WARNING:", "- growpart failed"])),
        (0, "status: disabled\n", ("disabled", [])),
        (127, "sh: 1: cloud-init: not found\n", ("absent", [])),
    ],
    ids=["done-22.4", "running", "error", "degraded-23.4", "disabled", "no-cloud-init"],
)
def test_cloud_init_status_is_read_as_a_state_and_its_reasons(code, output, expected):
    from kubenet.readiness import parse_cloud_init_status

    assert parse_cloud_init_status(code, output) == expected
