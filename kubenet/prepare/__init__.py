"""Preparing VMs (`make setup`, `invoke vmsetup`): every file a VM is made of, checked before written.

  image         the base image: download, verify, content-addressed cache
  disk          qcow2 overlays and UEFI variable stores (qcow2 too); whether a disk is in use
  imagecheck    whether a disk and a variable store are whole (qcow2 metadata, sizes)
  seed          cloud-init seed files * and the `cidata` ISO; instance-id from their content
  bootmarks     the marks a guest prints on its console at each boot (sshd listening, cloud-init
                finished): the watcher the seed gives it *, and reading them back from the log
  netconfig     per-role network-config extras: checked as v2, merged into kubenet's *
  cloudconfig   check templates and user-data as cloud-init would, before a seed is written
  sshkeys       host keys, known_hosts and ssh_config (hosts' blocks too)
  vmsetup       put those together for each VM, checking every input first
  makevars      the cluster as Make variables for the Makefile
"""
