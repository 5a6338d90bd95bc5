"""imgbuild settings readable through Metaflow's configuration (env var METAFLOW_<NAME> or
the Metaflow config file). imgbuild reads the same keys itself, with its own precedence
(imagebuilder/config.py); these make them visible to `metaflow configure` users and code."""

from metaflow.metaflow_config_funcs import from_conf

# store URL (default: <METAFLOW_DATASTORE_SYSROOT_S3>/imgbuild, or .metaflow/imgbuild)
IMGBUILD_STORE = from_conf("IMGBUILD_STORE")
# HOST[:PORT]/REPO: remote steps run on images baked and pushed here
IMGBUILD_REGISTRY = from_conf("IMGBUILD_REGISTRY")
# comma-separated host:port served over plain HTTP
IMGBUILD_INSECURE_REGISTRIES = from_conf("IMGBUILD_INSECURE_REGISTRIES")
# base image for baked steps without image= (default: Metaflow's container image)
IMGBUILD_BASE_IMAGE = from_conf("IMGBUILD_BASE_IMAGE")
# do not add Metaflow's own needs (requests, boto3) to every step's environment
IMGBUILD_SKIP_METAFLOW_DEPS = from_conf("IMGBUILD_SKIP_METAFLOW_DEPS", False)

DEBUG_OPTIONS = ["imgbuild"]
