import pytest

from jalien.auth.accounts import RESERVED_LOGINS, Account, AccountMap
from jalien.auth.errors import AuthError

JDOE = "/C=ch/O=jalien/OU=Users/CN=jdoe"
MALLORY = "/C=ch/O=jalien/OU=Users/CN=mallory"

TEXT = f"""
[[account]]
login = "jdoe"
dn = "{JDOE}"
roles = ["users", "admin"]
home = "/alice/cern.ch/user/j/jdoe/"

[[account]]
login = "mallory"
dn = "{MALLORY}"

[revoked]
dns = ["{MALLORY}"]
"""


def test_load_and_lookup(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text(TEXT)
    accounts = AccountMap.load(path)
    jdoe = accounts.lookup(JDOE)
    assert jdoe == Account(
        login="jdoe", dn=JDOE, roles=["users", "admin"], home="/alice/cern.ch/user/j/jdoe/"
    )
    with pytest.raises(AuthError, match="revoked"):
        accounts.lookup(MALLORY)
    with pytest.raises(AuthError, match="unknown user /C=ch/O=x/CN=y"):
        accounts.lookup("/C=ch/O=x/CN=y")
    with pytest.raises(AuthError, match="unknown user"):
        accounts.lookup(JDOE + "/CN=12345")


def test_save_round_trip(tmp_path):
    accounts = AccountMap()
    odd = 'CN=quote " back\\slash \x7f tab\t é'
    accounts.add(Account(login="jdoe", dn=JDOE, roles=["users"]))
    accounts.add(Account(login="jdoe", dn="/C=ch/O=other/" + odd))
    accounts.revoke(MALLORY)
    path = tmp_path / "sub" / "accounts.toml"
    accounts.save(path)
    loaded = AccountMap.load(path)
    assert sorted(a.dn for a in loaded) == sorted(a.dn for a in accounts)
    assert loaded.is_revoked(MALLORY)
    assert len(loaded.by_login("jdoe")) == 2
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[account]\n", "not valid TOML"),
        ('[[account]]\nlogin = "x"\n', "dn"),
        ('[[account]]\nlogin = "x"\ndn = "/CN=a"\ncolour = "red"\n', "colour"),
        (
            '[[account]]\nlogin = "x"\ndn = "/CN=a"\n[[account]]\nlogin = "y"\ndn = "/CN=a"\n',
            "listed twice",
        ),
        ('[revoked]\nlist = ["/CN=a"]\n', "unknown"),
    ],
)
def test_bad_files(tmp_path, text, message):
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    with pytest.raises(AuthError, match=message):
        AccountMap.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(AuthError, match="does not exist"):
        AccountMap.load(tmp_path / "none.toml")


def test_the_catalogue_owner_is_no_account(tmp_path):
    from jalien.catalogue.service import ROOT, ROOT_OWNER

    assert ROOT.owner == ROOT.gowner == ROOT_OWNER
    assert ROOT_OWNER in RESERVED_LOGINS
    with pytest.raises(AuthError, match="reserved"):
        AccountMap().add(Account(login=ROOT_OWNER, dn="/CN=admin"))
    path = tmp_path / "accounts.toml"
    path.write_text('[[account]]\nlogin = "admin"\ndn = "/CN=admin"\n')
    with pytest.raises(AuthError, match="reserved"):
        AccountMap.load(path)
