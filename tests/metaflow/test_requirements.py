"""How decorators merge into a step's request (Conda v2's rules) and become an EnvSpec."""

from __future__ import annotations

import metaflow  # noqa: F401 - first: Metaflow imports our decorators while it loads plugins
import pytest

from imagebuilder.errors import BadInput
from imagebuilder.metaflow.requirements import (
    Part,
    RequestError,
    combine,
    conda_spec,
    parse_packages,
    pypi_req,
    to_spec,
)

PY = "3.11"


def spec_of(flow=(), step=(), **kw):
    kw.setdefault("default_python", PY)
    return to_spec(combine(list(flow), list(step)), "linux-64", **kw)


@pytest.mark.parametrize(
    "version, conda, pypi",
    [
        ("", "numpy", "numpy"),
        ("1.26.4", "numpy==1.26.4", "numpy==1.26.4"),
        (">=1.26,<2", "numpy>=1.26,<2", "numpy>=1.26,<2"),
        ("1.26.*", "numpy 1.26.*", "numpy==1.26.*"),
        ("~=1.26", "numpy~=1.26", "numpy~=1.26"),
    ],
)
def test_version_strings_mean_what_metaflow_users_expect(version, conda, pypi):
    assert conda_spec("numpy", version) == conda
    assert pypi_req("numpy", version) == pypi


def test_step_overrides_flow_and_adds_to_it():
    flow = Part("@conda_base", conda=(("tinyfoo", "1.0"), ("six", "")), python="3.10")
    step = Part("@conda on step a", conda=(("tinyfoo", "2.0"),), python="3.11")
    spec, _ = spec_of([flow], [step])
    assert set(spec.conda) == {"tinyfoo==2.0", "six"}
    assert spec.python == "3.11.*"
    assert spec.origin("tinyfoo==2.0") == "@conda on step a"
    assert spec.origin("six") == "@conda_base"


def test_conda_and_pypi_on_one_step_make_one_mixed_env():
    spec, _ = spec_of(
        step=[
            Part("@conda on step a", conda=(("tinyfoo", ""),), channels=("http://ch",)),
            Part("@pypi on step a", pypi=(("imgb-hello", "1.1"),), indexes=("http://extra",)),
        ],
        index_url="http://primary/simple",
    )
    assert spec.conda == ("tinyfoo",) and spec.pypi == ("imgb-hello==1.1",)
    assert spec.channels == ("http://ch",)
    assert spec.indexes == ("http://primary/simple", "http://extra")


@pytest.mark.parametrize(
    "parts, words",
    [
        (
            [Part("@conda_base", python="3.10"), Part("@pypi_base", python="3.11")],
            ["python", "@conda_base", "@pypi_base"],
        ),
        (
            [Part("@conda_base", conda=(("six", "1.0"),)), Part("@pypi_base", python="3.11")],
            None,
        ),
    ],
)
def test_conflicting_flow_level_values_are_an_error(parts, words):
    if words is None:
        combine(parts, [])  # no conflict
        return
    with pytest.raises(RequestError) as e:
        combine(parts, [])
    for w in words:
        assert w in e.value.message


def test_conflicting_decorators_on_one_step_are_an_error():
    with pytest.raises(RequestError) as e:
        combine(
            [],
            [
                Part("@conda on step a", conda=(("six", "1.16.0"),)),
                Part("@pypi on step a", conda=(("six", "1.15.0"),)),
            ],
        )
    assert "six" in e.value.message and "@conda on step a" in e.value.message


def test_named_env_cannot_take_packages():
    with pytest.raises(RequestError) as e:
        combine(
            [],
            [
                Part("@named_env on step a", named="team/x"),
                Part("@conda on step a", conda=(("six", ""),)),
            ],
        )
    assert "@named_env on step a" in e.value.message and "@conda on step a" in e.value.message
    with pytest.raises(RequestError, match="cannot be extended"):
        combine(
            [Part("@named_env_base", named="team/x")], [Part("@pypi on step a", pypi=(("x", ""),))]
        )
    with pytest.raises(RequestError, match="cannot be combined"):
        combine([], [Part("@conda on step a", named="team/x", conda=(("six", ""),))])


def test_step_named_env_replaces_flow_packages():
    req = combine(
        [Part("@conda_base", conda=(("six", ""),))], [Part("@named_env on step a", named="team/x")]
    )
    assert req.named == ("team/x", "@named_env on step a")
    assert not req.conda


def test_disabled_and_empty_steps_are_unmanaged():
    assert combine(
        [Part("@conda_base", conda=(("six", ""),))], [Part("@conda on step a", disabled=True)]
    ).is_disabled
    assert combine([], []).is_empty
    assert not combine(
        [Part("@conda_base", disabled=True)], [Part("@conda on a", disabled=False)]
    ).is_disabled


def test_fetch_at_exec_needs_a_name():
    with pytest.raises(RequestError, match="fetch_at_exec"):
        combine([], [Part("@named_env on step a", fetch_at_exec=True)])


def test_defaults_and_implicit_packages_are_in_the_request():
    spec, _ = spec_of(step=[Part("@conda on step a", conda=(("tinyfoo", ""),))])
    assert spec.channels == ("conda-forge",) and spec.indexes == ()
    spec2, _ = spec_of(
        step=[Part("@conda on step a", conda=(("tinyfoo", ""),))],
        channels=("http://mine",),
        implicit_pypi=("boto3>=1.14.0", "requests>=2.21.0"),
    )
    assert spec2.channels == ("http://mine",)
    assert spec2.implicit_pypi == ("boto3>=1.14.0", "requests>=2.21.0")
    assert spec2.indexes == ("https://pypi.org/simple",)  # implicit PyPI needs an index
    assert spec2.req_id != spec.req_id


def test_credentials_stay_out_of_the_spec():
    spec, secrets = spec_of(
        step=[Part("@conda on step a", conda=(("x", ""),), channels=("https://u:pw@ch.example/c",))]
    )
    assert spec.channels == ("https://ch.example/c",)
    assert secrets == {"https://ch.example/c": "https://u:pw@ch.example/c"}
    assert "pw" not in str(spec.to_json())


def test_bad_attribute_values_name_the_decorator():
    with pytest.raises(RequestError, match=r"@conda on step a: libraries must be a dict"):
        parse_packages("numpy", "@conda on step a", "libraries")
    with pytest.raises(RequestError, match="version of numpy"):
        parse_packages({"numpy": ["1"]}, "@conda on step a", "libraries")
    with pytest.raises(BadInput, match="@pypi on step a"):
        spec_of(step=[Part("@pypi on step a", pypi=(("not a name!", ""),))])
    assert parse_packages(["numpy>=2", "six"], "w", "a") == (("numpy", ">=2"), ("six", ""))


def test_decorator_attributes_become_parts():
    from imagebuilder.metaflow.decorators import (
        CondaStepDecorator,
        NamedEnvStepDecorator,
        PypiFlowDecorator,
        SysPackagesStepDecorator,
    )

    d = CondaStepDecorator(
        attributes={
            "libraries": {"tinyfoo": "1.0"},
            "packages": {"six": ""},
            "pip_packages": {"x": "1"},
        }
    )
    p = d.part("s")
    assert p.where == "@conda on step s"
    assert p.conda == (("tinyfoo", "1.0"), ("six", "")) and p.pypi == (("x", "1"),)
    p = PypiFlowDecorator(attributes={"packages": {"a": ""}, "extra_indices": ["http://x"]}).part()
    assert p.where == "@pypi_base" and p.indexes == ("http://x",)
    assert NamedEnvStepDecorator(attributes={"pathspec": "F/1/s"}).part("t").named == "mf:F/1/s"
    with pytest.raises(RequestError, match="not both"):
        NamedEnvStepDecorator(attributes={"pathspec": "F/1/s", "name": "a/b"}).part("t")
    with pytest.raises(RequestError, match="name the environment"):
        NamedEnvStepDecorator(attributes={}).part("t")
    sys_part = SysPackagesStepDecorator(attributes={"packages": {"__cuda": "12.1"}}).part("t")
    assert sys_part.sys == (("__cuda", "12.1"),)
    with pytest.raises(RequestError, match="@sys_packages on step t"):
        SysPackagesStepDecorator(attributes={"packages": {"cuda": "12"}}).part("t")
