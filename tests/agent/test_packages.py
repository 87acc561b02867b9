"""The package tree in ALICE's layout: its listing (``alienv q``), the architecture, the
environment loaded through Environment Modules with a module's dependencies, the errors a
job ends ERROR_IB with; and the offer's packages (digest, the list when central asks)."""

from __future__ import annotations

import pytest

from jalien.agent.agent import AgentConfig, JobAgent
from jalien.agent.environment import clean_environment
from jalien.agent.packages import Advertised, PackageError, PackageTree, detect_arch
from jalien.agent.runner import RunConfig
from jalien.agent.sandbox import Sandbox
from jalien.wire import packages as names
from jalien.wire import site_api
from jalien.wire.messages import Reply
from jalien.wire.site_api import JobOffer, PackagesWanted
from tests.agent.alice_tree import ARCH, LISTING, make_tree, need_modulecmd


def test_listing_is_alienv_q_and_the_arch_is_found(tmp_path):
    root = make_tree(tmp_path / "cvmfs")
    (root / ARCH / "Modules" / "modulefiles" / "stray-file").write_text("")  # not a package
    assert detect_arch(root) == ARCH
    tree = PackageTree(root, ARCH, "modulecmd")
    assert tree.listing() == LISTING  # .version files are no versions
    (root / "el8-x86_64" / "Modules" / "modulefiles").mkdir(parents=True)
    with pytest.raises(PackageError, match="set JALIEN_PACKAGES_ARCH to one of them"):
        detect_arch(root)  # two, and this Debian host is neither
    with pytest.raises(PackageError, match="no <arch>/Modules/modulefiles"):
        detect_arch(tmp_path)
    with pytest.raises(PackageError, match="is not a directory"):
        PackageTree.open(str(tmp_path / "nowhere"))
    with pytest.raises(PackageError, match="no no-such-modulecmd to load packages with"):
        PackageTree.open(str(root), ARCH, "no-such-modulecmd")


async def test_modules_load_with_their_dependencies(tmp_path):
    tree = PackageTree.open(str(make_tree(tmp_path / "cvmfs")), ARCH, need_modulecmd())
    box = Sandbox(tmp_path / "work", 3).create()
    base = clean_environment({"PATH": "/usr/bin:/bin", "JALIEN_TOKEN_CERT": "agent's"}, box)
    env = await tree.load(["VO_ALICE@Analysis::v2-1"], base, box.root)
    packages = tmp_path / "cvmfs" / ARCH / "Packages"
    assert env["ANALYSIS_ROOT"] == str(packages / "Analysis" / "v2-1")
    assert env["GENLIB_ROOT"] == str(packages / "GenLib" / "v1-1")  # the dependency's
    assert env["PATH"].split(":")[:2] == [
        str(packages / "Analysis" / "v2-1" / "bin"),
        str(packages / "GenLib" / "v1-1" / "bin"),
    ]
    assert env["PATH"].endswith(":/usr/bin:/bin") and env["HOME"] == str(box.root)
    assert "Analysis/v2-1" in env["LOADEDMODULES"] and "_" not in env
    bare = await tree.load(["VO_ALICE@GenLib"], base, box.root)  # no version: the default
    assert bare["GENLIB_VERSION"] == "v1-1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("VO_ALICE@Geant4::v1", "Unable to locate a modulefile for 'Geant4/v1'"),
        ("VO_ALICE@GenLib::v9", "Unable to locate a modulefile for 'GenLib/v9'"),
        ("VO_ALICE@../etc::x", "not a valid package name"),
        ("VO_ALICE@GenLib::../../x", "not a valid package name"),
    ],
)
async def test_missing_or_hostile_packages_are_refused(tmp_path, spec, message):
    tree = PackageTree.open(str(make_tree(tmp_path / "cvmfs")), ARCH, need_modulecmd())
    with pytest.raises(PackageError, match=message):
        await tree.load([spec], {"PATH": "/usr/bin:/bin"}, tmp_path)


async def test_advertised_digest_list_and_refresh(tmp_path):
    root = make_tree(tmp_path / "cvmfs")
    now = [0.0]
    advertised = Advertised(PackageTree(root, ARCH, "modulecmd"), 60, clock=lambda: now[0])
    fields = await advertised.offer_fields(with_list=False)
    assert fields == {"packages_digest": names.digest(LISTING), "packages_root": f"{root}/{ARCH}"}
    assert (await advertised.offer_fields(with_list=True))["packages"] == LISTING
    extra = root / ARCH / "Modules" / "modulefiles" / "Extra" / "v1"
    extra.parent.mkdir()
    extra.write_text("#%Module1.0\n")
    assert (await advertised.current())[1] == LISTING  # read again only after the refresh
    now[0] = 61
    assert "VO_ALICE@Extra::v1" in (await advertised.current())[1]
    assert await Advertised(None).offer_fields(with_list=False) == {"packages": []}


class WantsTheList:
    """A central that does not know the agent's digest until it gets the list."""

    def __init__(self) -> None:
        self.offers: list[JobOffer] = []
        self.on_event = None

    async def request(self, request, timeout=None):
        offer = site_api.decode(request.data[0], JobOffer)
        self.offers.append(offer)
        if offer.packages is None:
            return Reply(data=[site_api.encode(PackagesWanted(digest=offer.packages_digest))])
        return Reply()  # no job

    async def call(self, *args, timeout=None):
        return Reply()


async def test_the_agent_sends_its_list_when_central_asks(tmp_path):
    root = make_tree(tmp_path / "cvmfs")
    central = WantsTheList()
    advertised = Advertised(PackageTree(root, ARCH, "modulecmd"))
    agent = JobAgent(
        AgentConfig(site="S", ce="CE", packages=advertised),
        RunConfig(site="S", node="wn1", workdir=str(tmp_path), ca_dir=tmp_path),
        central,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
    )
    assert await agent._match(600) is None
    first, second = central.offers
    assert first.packages is None and first.packages_digest == names.digest(LISTING)
    assert second.packages == LISTING and second.packages_digest == first.packages_digest
