"""User-facing errors: one class per kind, all under KubenetError.

Tasks catch KubenetError and turn it into a one-line message with a hint and a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class KubenetError(Exception):
    """A problem the user can fix; `hint` says how."""

    default_hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(KubenetError):
    """cluster.yaml cannot be used as it is."""


class ConfigFileError(ConfigError):
    """The file is missing or is not YAML."""


class ConfigProblems(ConfigError):
    """More than one thing is wrong in cluster.yaml: every one is reported, a line each."""

    def __init__(self, problems: list[ConfigError]):
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [str(problem) for problem in self.problems]


class DuplicateKeyError(ConfigError):
    """A key given twice in one mapping: YAML would keep the last one silently."""


class UnknownKeyError(ConfigError):
    """A key that kubenet does not know (often a typo)."""


class WrongTypeError(ConfigError):
    """A value of the wrong type, e.g. a list where a number belongs."""


class BadValueError(ConfigError):
    """A value of the right type that is not allowed, e.g. memory `4X`."""


class DuplicateNameError(ConfigError):
    """Two VMs or roles would get the same name."""


class CapacityError(ConfigError):
    """More VMs than the address or MAC scheme can hold."""


class UnknownVMError(KubenetError):
    """An --id or --name that names no VM of the cluster."""

    default_hint = "`invoke ls` lists the VMs"


class HostError(KubenetError):
    """This machine lacks something needed: qemu, firmware, a bridge, ..."""


class SetupError(KubenetError):
    """Preparing a VM's files failed."""


class DownloadError(KubenetError):
    """The base image could not be fetched or verified."""


class LaunchError(KubenetError):
    """A VM or a helper process could not be started or controlled."""


class RemoteError(KubenetError):
    """Another host of the cluster (`hosts:`) could not be reached, or kubenet there refused."""

    default_hint = "look with `ssh -F <state_dir>/ssh_config kubenet-host.<name>`, as kubenet reaches it"
