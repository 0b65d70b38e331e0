import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from lib import crypto
from lib.secret import Secret

CONTEXT = "account:abc:client_secret"
RAW_SECRET = "Qx58Q~raw-secret-value-for-tests-0123456789"


@pytest.fixture
def new_key() -> str:
    return crypto.generate_key()


def test_a_value_round_trips_and_the_ciphertext_does_not_contain_it():
    ciphertext = crypto.encrypt(RAW_SECRET, context=CONTEXT)

    assert RAW_SECRET not in ciphertext
    assert crypto.decrypt(ciphertext, context=CONTEXT).reveal() == RAW_SECRET


def test_a_secret_wrapper_is_accepted_and_returned():
    ciphertext = crypto.encrypt(Secret(RAW_SECRET), context=CONTEXT)

    assert crypto.decrypt(ciphertext, context=CONTEXT) == Secret(RAW_SECRET)


def test_row_63_a_ciphertext_copied_to_another_row_does_not_decrypt_there():
    ciphertext = crypto.encrypt(RAW_SECRET, context="account:A:client_secret")

    with pytest.raises(crypto.UndecryptableValue):
        crypto.decrypt(ciphertext, context="account:B:client_secret")


def test_after_rotation_the_old_key_still_decrypts_and_the_new_key_encrypts(settings, new_key):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    written_with_old_key = crypto.encrypt(RAW_SECRET, context=CONTEXT)

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    assert crypto.decrypt(written_with_old_key, context=CONTEXT).reveal() == RAW_SECRET
    assert not crypto.is_encrypted_with_newest_key(written_with_old_key)
    written_now = crypto.encrypt(RAW_SECRET, context=CONTEXT)
    assert crypto.is_encrypted_with_newest_key(written_now)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert crypto.decrypt(written_now, context=CONTEXT).reveal() == RAW_SECRET


def test_reencrypting_moves_a_value_to_the_newest_key(settings, new_key):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    written_with_old_key = crypto.encrypt(RAW_SECRET, context=CONTEXT)
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    rotated = crypto.reencrypt(written_with_old_key, context=CONTEXT)

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert crypto.decrypt(rotated, context=CONTEXT).reveal() == RAW_SECRET


def test_a_value_no_key_opens_gives_a_clear_error_without_plaintext_or_ciphertext(
    settings, new_key
):
    ciphertext = crypto.encrypt(RAW_SECRET, context=CONTEXT)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]

    with pytest.raises(crypto.UndecryptableValue) as raised:
        crypto.decrypt(ciphertext, context=CONTEXT)

    message = str(raised.value)
    assert "cannot be decrypted" in message and CONTEXT in message
    assert RAW_SECRET not in message and ciphertext not in message


@pytest.mark.parametrize("garbage", ["", "not-a-token", "gAAAAA" + "x" * 80, "é"])
def test_garbage_ciphertext_raises_the_clear_error(garbage):
    with pytest.raises(crypto.UndecryptableValue):
        crypto.decrypt(garbage, context=CONTEXT)


def test_row_64_a_tampered_ciphertext_raises_the_clear_error():
    ciphertext = crypto.encrypt(RAW_SECRET, context=CONTEXT)
    flipped = ciphertext[:20] + ("A" if ciphertext[20] != "A" else "B") + ciphertext[21:]

    with pytest.raises(crypto.UndecryptableValue):
        crypto.decrypt(flipped, context=CONTEXT)


def test_the_secret_wrapper_never_shows_its_value(caplog):
    secret = Secret(RAW_SECRET)
    logging.getLogger("dynamics_connect.test").warning("secret is %s / %r", secret, secret)

    assert RAW_SECRET not in repr(secret)
    assert RAW_SECRET not in str(secret)
    assert RAW_SECRET not in f"{secret}"
    assert RAW_SECRET not in caplog.text


@pytest.mark.parametrize(
    "keys",
    [[], ["short"], ["not base64 at all!!!!!!!!!!!!!!!!!!!!!!!!!!!!"], ["", "x"]],
    ids=["empty", "short", "not-base64", "blank"],
)
def test_row_62_missing_or_malformed_keys_fail_the_system_checks(settings, keys):
    settings.FIELD_ENCRYPTION_KEYS = keys

    with pytest.raises(SystemCheckError, match=r"connections\.E001"):
        call_command("check")


def test_malformed_keys_are_refused_when_encrypting(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["short"]

    with pytest.raises(ImproperlyConfigured) as raised:
        crypto.encrypt(RAW_SECRET, context=CONTEXT)
    assert "short" not in str(raised.value)


@pytest.mark.django_db
def test_no_model_shows_a_secret_or_its_ciphertext_in_repr(admin, demo):
    from connections.models import DynamicsConnection, PendingAuthorization

    admin.start_reauthorization()
    connection = DynamicsConnection.objects.get(account=admin.account)
    app = connection.account.entra_app
    pending = PendingAuthorization.objects.get()

    for model in (connection, pending, app, connection.account):
        for shown in (repr(model), str(model)):
            assert demo.client_secret not in shown
            assert demo.second_client_secret not in shown
            assert app.credential_encrypted not in shown
            assert pending.credential_encrypted not in shown
