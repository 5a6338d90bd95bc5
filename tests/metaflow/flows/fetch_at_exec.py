"""A step whose named env is looked up when its task starts (fetch_at_exec)."""

import os

from metaflow import FlowSpec, named_env, step

ALIAS = os.environ.get("IMGB_MF_ALIAS", "mf-test/tools:v1")


class FetchFlow(FlowSpec):
    @named_env(name=ALIAS, fetch_at_exec=True)
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FetchFlow()
