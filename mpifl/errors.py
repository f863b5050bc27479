"""Error types that map to exit codes: user input errors exit 2."""


class InputError(Exception):
    """Bad user input (config, data file, output path). Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """A config key with a bad value; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {key} = {value!r}: {allowed}")


class RemoteRankError(RuntimeError):
    """Another rank failed; carries its rank and traceback text."""

    def __init__(self, rank: int, traceback_text: str) -> None:
        self.rank, self.traceback_text = rank, traceback_text
        super().__init__(f"rank {rank} failed:\n{traceback_text}")
