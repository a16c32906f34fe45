"""Telecom user-side env functions: task initialization (break the phone) and state assertions.

Tasks name these in ``initialization_actions`` (``env_type: user``) to put the phone into a
faulty state before the conversation, and in ``env_assertions`` to check the outcome. None is
ever shown to a model. The "turn X on/off" helpers go through the same toggles as the user
tools, so they also trigger the network searches those toggles trigger (which is why, after
``turn_data_off``, the signal reads ``excellent`` rather than the file's ``good``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from eigendspy.core.domain import assertion, env_function
from eigendspy.domains.telecom import device as phone
from eigendspy.domains.telecom.user_db import (
    APNNames,
    NetworkStatus,
    PerformanceLevel,
    PhoneDevice,
    SimStatus,
    Surroundings,
    TelecomUserDB,
)


def _settle(db: TelecomUserDB, flip: Callable[[PhoneDevice, Surroundings], bool], want: bool) -> None:
    """Toggle until the switch reads ``want`` (at most twice), like a user tapping a setting."""
    device, surroundings = db.device, db.surroundings
    if flip(device, surroundings) != want:
        flip(device, surroundings)


def _flip_airplane(device: PhoneDevice, surroundings: Surroundings) -> bool:
    phone.flip_airplane_mode(device, surroundings)
    return device.airplane_mode


def _flip_data(device: PhoneDevice, surroundings: Surroundings) -> bool:
    device.data_enabled = not device.data_enabled
    phone.search_network(device, surroundings)
    return device.data_enabled


def _flip_roaming(device: PhoneDevice, surroundings: Surroundings) -> bool:
    device.roaming_enabled = not device.roaming_enabled
    phone.search_network(device, surroundings)
    return device.roaming_enabled


def _flip_data_saver(device: PhoneDevice, surroundings: Surroundings) -> bool:
    device.data_saver_mode = not device.data_saver_mode
    return device.data_saver_mode


# -- who and where the user is ---------------------------------------------------------------
@env_function
def set_user_info(db: TelecomUserDB, name: str, phone_number: str) -> None:
    """Name the user and their phone number; from then on the sync hook mirrors that line."""
    db.surroundings.name = name
    db.surroundings.phone_number = phone_number


@env_function
def set_user_location(db: TelecomUserDB, abroad: bool) -> None:
    """Put the user abroad (roaming rules apply to mobile data) or at home."""
    db.surroundings.is_abroad = abroad


# -- break or set up the phone ---------------------------------------------------------------
@env_function
def turn_airplane_mode_on(db: TelecomUserDB) -> None:
    _settle(db, _flip_airplane, True)


@env_function
def turn_airplane_mode_off(db: TelecomUserDB) -> None:
    _settle(db, _flip_airplane, False)


@env_function
def turn_data_off(db: TelecomUserDB) -> None:
    _settle(db, _flip_data, False)


@env_function
def turn_data_on(db: TelecomUserDB) -> None:
    """Switch data on without a network search (tau2 does not search here either)."""
    db.device.data_enabled = True


@env_function
def turn_roaming_on(db: TelecomUserDB) -> None:
    _settle(db, _flip_roaming, True)


@env_function
def turn_roaming_off(db: TelecomUserDB) -> None:
    _settle(db, _flip_roaming, False)


@env_function
def turn_data_saver_mode_on(db: TelecomUserDB) -> None:
    _settle(db, _flip_data_saver, True)


@env_function
def turn_data_saver_mode_off(db: TelecomUserDB) -> None:
    _settle(db, _flip_data_saver, False)


@env_function
def unseat_sim_card(db: TelecomUserDB) -> None:
    """Take the SIM out of its tray (fixed by ``reseat_sim_card``)."""
    db.device.sim_card_missing = True
    phone.search_network(db.device, db.surroundings)


@env_function
def lock_sim_card(db: TelecomUserDB, mode: Literal["pin", "puk"]) -> None:
    """Lock the SIM with a PIN or PUK (no tool can fix this: the agent must transfer)."""
    if mode == "pin":
        db.device.sim_card_status = SimStatus.LOCKED_PIN
    elif mode == "puk":
        db.device.sim_card_status = SimStatus.LOCKED_PUK
    phone.search_network(db.device, db.surroundings)


@env_function
def break_apn_settings(db: TelecomUserDB) -> None:
    """Corrupt the data APN (no service until ``reset_apn_settings`` + ``reboot_device``)."""
    db.device.active_apn_settings.apn_name = APNNames.BROKEN
    phone.search_network(db.device, db.surroundings)


@env_function
def break_apn_mms_setting(db: TelecomUserDB) -> None:
    """Remove the MMSC URL (MMS fails until the APN is reset and the phone rebooted)."""
    db.device.active_apn_settings.mmsc_url = None


@env_function
def break_vpn(db: TelecomUserDB) -> None:
    """Connect a VPN whose server performs poorly (slow data until it is disconnected)."""
    device = db.device
    if not device.vpn_connected:
        device.vpn_connected = True
        device.vpn_details = phone.VPN_DEFAULT.model_copy(deep=True)
    device.vpn_details.server_performance = PerformanceLevel.POOR


@env_function
def remove_app_permission(db: TelecomUserDB, app_name: str, permission: str) -> bool:
    """Revoke one permission of an installed app; returns whether anything was revoked."""
    app = db.device.app_statuses.get(app_name)
    permission = permission.lower()
    if app is None or permission not in type(app.permissions).model_fields:
        return False
    setattr(app.permissions, permission, False)
    return True


@env_function
def set_wifi_calling(db: TelecomUserDB, enabled: bool, mms_over_wifi: bool | None = None) -> None:
    """Set Wi-Fi calling, and optionally whether MMS goes over Wi-Fi (which the carrier rejects)."""
    db.device.wifi_calling_enabled = enabled
    if mms_over_wifi is not None:
        db.device.wifi_calling_mms_over_wifi = mms_over_wifi


@env_function
def simulate_network_search(db: TelecomUserDB) -> None:
    """Let the phone re-register now, e.g. after the carrier suspended the line during setup."""
    phone.search_network(db.device, db.surroundings)


# -- assertions ------------------------------------------------------------------------------
@assertion
def assert_airplane_mode_status(db: TelecomUserDB, expected_status: bool) -> bool:
    return db.device.airplane_mode == expected_status


@assertion
def assert_service_status(db: TelecomUserDB, expected_status: str) -> bool:
    """Whether the phone's cellular connection is ``connected``/``no_service``/... as expected."""
    return db.device.network_connection_status == NetworkStatus(expected_status)


@assertion
def assert_mobile_data_status(db: TelecomUserDB, expected_status: bool) -> bool:
    return phone.mobile_data_working(db.device, db.surroundings) == expected_status


@assertion
def assert_mobile_roaming_status(db: TelecomUserDB, expected_status: bool) -> bool:
    return db.device.roaming_enabled == expected_status


@assertion
def assert_mobile_data_saver_mode_status(db: TelecomUserDB, expected_status: bool) -> bool:
    return db.device.data_saver_mode == expected_status


@assertion
def assert_internet_speed(db: TelecomUserDB, expected_speed: float, expected_desc: str | None = None) -> bool:
    """At least ``expected_speed`` Mbps and, when given, the speed label (case-insensitive)."""
    speed, label = phone.measure_speed(db.device, db.surroundings)
    fast_enough = (speed or 0.0) >= expected_speed
    return fast_enough if expected_desc is None else fast_enough and label.lower() == expected_desc.lower()


@assertion
def assert_internet_not_excellent(db: TelecomUserDB) -> bool:
    return phone.measure_speed(db.device, db.surroundings)[1].lower() != "excellent"


@assertion
def assert_can_send_mms(db: TelecomUserDB, expected_status: bool) -> bool:
    return phone.can_send_mms(db.device, db.surroundings) == expected_status


@assertion
def assert_mobile_data_usage_exceeded(db: TelecomUserDB, expected_status: bool) -> bool:
    return db.surroundings.mobile_data_usage_exceeded == expected_status


USER_FUNCTIONS = [
    set_user_info,
    set_user_location,
    turn_airplane_mode_on,
    turn_airplane_mode_off,
    turn_data_off,
    turn_data_on,
    turn_roaming_on,
    turn_roaming_off,
    turn_data_saver_mode_on,
    turn_data_saver_mode_off,
    unseat_sim_card,
    lock_sim_card,
    break_apn_settings,
    break_apn_mms_setting,
    break_vpn,
    remove_app_permission,
    set_wifi_calling,
    simulate_network_search,
    assert_airplane_mode_status,
    assert_service_status,
    assert_mobile_data_status,
    assert_mobile_roaming_status,
    assert_mobile_data_saver_mode_status,
    assert_internet_speed,
    assert_internet_not_excellent,
    assert_can_send_mms,
    assert_mobile_data_usage_exceeded,
]
