"""Telecom user tools: what the customer can check and change on their own phone.

Names, schemas and outputs equal tau2-bench's user toolkit, in tau2's order (``USER_TOOLS``).
The descriptions are tau2's schema text (the model is trained on them), hence a few long
docstring lines. Unlike agent tools, user tools report most failures inside a normal answer
(``Error. App 'camera' not found...``, ``Failed to set network mode...``) and only Python-level
problems (missing arguments, an invalid ``apn_settings`` object) become error messages.

Read tools only look at the shared state; every change happens in a write tool, which gets
private copies of ``device`` and ``surroundings``.
"""

from __future__ import annotations

from typing import Any

from eigendspy.core.domain import tool
from eigendspy.domains.telecom import device as phone
from eigendspy.domains.telecom.user_db import (
    APNSettings,
    NetworkModePreference,
    TelecomUserDB,
)


def _on_off(flag: bool) -> str:
    return "ON" if flag else "OFF"


@tool(kind="read")
def check_status_bar(db: TelecomUserDB) -> str:
    """Shows what icons are currently visible in your phone's status bar (the area at the top of the screen). Displays network signal strength, mobile data status (enabled, disabled, data saver), Wi-Fi status, and battery level."""  # noqa: E501
    return f"Status Bar: {phone.status_bar(db.device)}"


@tool(kind="read")
def check_network_status(db: TelecomUserDB) -> str:
    """Checks your phone's connection status to cellular networks and Wi-Fi. Shows airplane mode status, signal strength, network type, whether mobile data is enabled, and whether data roaming is enabled."""  # noqa: E501
    device = db.device
    report = [
        f"Airplane Mode: {_on_off(device.airplane_mode)}",
        f"SIM Card Status: {phone.effective_sim_status(device).value}",
        f"Cellular Connection: {device.network_connection_status.value}",
        f"Cellular Signal: {device.network_signal_strength.value}",
        f"Cellular Network Type: {device.network_technology_connected.value}",
        f"Mobile Data Enabled: {'Yes' if device.data_enabled else 'No'}",
        f"Data Roaming Enabled: {'Yes' if device.roaming_enabled else 'No'}",
        f"Wi-Fi Radio: {_on_off(device.wifi_enabled)}",
        f"Wi-Fi Connected: {'Yes' if device.wifi_connected else 'No'}",
    ]
    if device.wifi_connected:
        report.append(f"Connected Wi-Fi Network: {device.wifi_ssid}")
    return "\n".join(report)


@tool(kind="read")
def check_network_mode_preference(db: TelecomUserDB) -> str:
    """Shows the current network mode preference."""
    return f"Network Mode Preference: {db.device.network_mode_preference.value}"


@tool(kind="write")
def set_network_mode_preference(db: TelecomUserDB, mode: NetworkModePreference | str) -> str:
    """Changes the type of cellular network your phone prefers to connect to (e.g., 5G, LTE/4G, 3G). Higher-speed networks (LTE/5G) provide faster data but may use more battery."""  # noqa: E501
    device = db.device
    valid = [m.value for m in NetworkModePreference]
    if not isinstance(mode, str) or mode not in valid:
        return phone.with_status_bar(
            f"Failed to set network mode: '{mode}' is not a valid option. Please use one of: {', '.join(valid)}", device
        )
    device.network_mode_preference = NetworkModePreference(mode)
    phone.search_network(device, db.surroundings)
    return phone.with_status_bar(f"Preferred Network Mode set to: {device.network_mode_preference.value}", device)


@tool(kind="read")
def run_speed_test(db: TelecomUserDB) -> str:
    """Measures your current internet connection speed (download speed). Provides information about connection quality and what activities it can support."""  # noqa: E501
    speed, label = phone.measure_speed(db.device, db.surroundings)
    if speed is None:
        return f"Speed test failed: {label}."
    return f"Speed Test Result: {speed:.2f} Mbps ({label}). {phone.speed_label(speed)[1]}"


@tool(kind="write")
def toggle_airplane_mode(db: TelecomUserDB) -> str:
    """Toggles Airplane Mode ON or OFF. When ON, it disconnects all wireless communications including cellular, Wi-Fi, and Bluetooth.

    Returns the new state of airplane_mode.
    """  # noqa: E501
    device = db.device
    phone.flip_airplane_mode(device, db.surroundings)
    return phone.with_status_bar(f"Airplane Mode is now {_on_off(device.airplane_mode)}.", device)


@tool(kind="read")
def check_sim_status(db: TelecomUserDB) -> str:
    """Checks if your SIM card is working correctly and displays its current status. Shows if the SIM is active, missing, or locked with a PIN or PUK code."""  # noqa: E501
    status = phone.effective_sim_status(db.device)
    return SIM_MESSAGES.get(status.value, f"Unknown SIM status: {status.value}")


SIM_MESSAGES = {
    "active": "Your SIM card is active and working.",
    "missing": "No SIM card detected in the phone.",
    "locked_pin": "The SIM card is locked with a PIN code.",
    "locked_puk": "The SIM card is locked with a PUK code.",
}


@tool(kind="write")
def reseat_sim_card(db: TelecomUserDB) -> str:
    """Simulates removing and reinserting your SIM card. This can help resolve recognition issues."""
    device = db.device
    device.sim_card_missing = False
    phone.search_network(device, db.surroundings)
    return phone.with_status_bar("SIM card re-seated successfully.", device)


@tool(kind="write")
def toggle_data(db: TelecomUserDB) -> str:
    """Toggles your phone's mobile data connection ON or OFF. Controls whether your phone can use cellular data for internet access when Wi-Fi is unavailable.

    Returns the new data connection status.
    """  # noqa: E501
    device = db.device
    device.data_enabled = not device.data_enabled
    phone.search_network(device, db.surroundings)
    return phone.with_status_bar(f"Mobile Data is now {_on_off(device.data_enabled)}.", device)


@tool(kind="write")
def toggle_roaming(db: TelecomUserDB) -> str:
    """Toggles Data Roaming ON or OFF. When ON, your phone can use data networks in areas outside your carrier's coverage.

    Returns the new data roaming status.
    """  # noqa: E501
    device = db.device
    device.roaming_enabled = not device.roaming_enabled
    phone.search_network(device, db.surroundings)
    return phone.with_status_bar(f"Data Roaming is now {_on_off(device.roaming_enabled)}.", device)


@tool(kind="read")
def check_data_restriction_status(db: TelecomUserDB) -> str:
    """Checks if your phone has any data-limiting features active. Shows if Data Saver mode is on."""
    return "Data Saver mode is ON (limits data usage)." if db.device.data_saver_mode else "Data Saver mode is OFF."


@tool(kind="write")
def toggle_data_saver_mode(db: TelecomUserDB) -> str:
    """Toggles Data Saver mode ON or OFF. When ON, it reduces data usage, which may affect data speed.

    Returns the new data saver mode status.
    """
    device = db.device
    device.data_saver_mode = not device.data_saver_mode
    return phone.with_status_bar(f"Data Saver Mode is now {_on_off(device.data_saver_mode)}.", device)


@tool(kind="read")
def check_apn_settings(db: TelecomUserDB) -> str:
    """Checks the technical APN settings your phone uses to connect to your carrier's mobile data network. Shows current APN name and MMSC URL for picture messaging."""  # noqa: E501
    apn = db.device.active_apn_settings
    return (
        f"Current APN Name: {apn.apn_name.value or 'Not Set'}\n"
        f"MMSC URL (for picture messages): {apn.mmsc_url or 'Not Set'}\n"
        "(These are technical settings, usually best left unchanged.)"
    )


@tool(kind="write")
def set_apn_settings(db: TelecomUserDB, apn_settings: APNSettings | dict[str, Any]) -> str:
    """Sets the APN settings for the phone."""
    if isinstance(apn_settings, dict):
        apn_settings = APNSettings(**apn_settings)
    device = db.device
    device.active_apn_settings = apn_settings
    phone.search_network(device, db.surroundings)
    return phone.with_status_bar(f"APN settings set to: {apn_settings.apn_name.value}", device)


@tool(kind="write")
def reset_apn_settings(db: TelecomUserDB) -> str:
    """Resets your APN settings to the default settings."""
    device = db.device
    device.active_apn_settings.reset_at_reboot = True
    phone.search_network(device, db.surroundings)
    return phone.with_status_bar("APN settings will reset at reboot.", device)


@tool(kind="read")
def check_wifi_status(db: TelecomUserDB) -> str:
    """Checks your Wi-Fi connection status. Shows if Wi-Fi is turned on, which network you're connected to (if any), and the signal strength."""  # noqa: E501
    device = db.device
    if not device.wifi_enabled:
        return "Wi-Fi is turned OFF."
    if device.wifi_connected:
        strength = device.wifi_signal_strength.value
        return f"Wi-Fi is ON and connected to '{device.wifi_ssid}'. Signal strength: {strength}."
    return "Wi-Fi is ON but not connected to any network."


@tool(kind="write")
def toggle_wifi(db: TelecomUserDB) -> str:
    """Toggles your phone's Wi-Fi radio ON or OFF. Controls whether your phone can discover and connect to wireless networks for internet access.

    Returns the new Wi-Fi status.
    """  # noqa: E501
    device = db.device
    if device.airplane_mode:
        return phone.with_status_bar("Cannot change Wi-Fi settings while Airplane Mode is ON.", device)
    device.wifi_enabled = not device.wifi_enabled
    if not device.wifi_enabled:
        phone.forget_wifi_network(device)
    return phone.with_status_bar(f"Wi-Fi is now {_on_off(device.wifi_enabled)}.", device)


@tool(kind="read")
def check_wifi_calling_status(db: TelecomUserDB) -> str:
    """Checks if Wi-Fi Calling is enabled on your device. This feature allows you to make and receive calls over a Wi-Fi network instead of using the cellular network."""  # noqa: E501
    return f"Wi-Fi Calling is currently turned {_on_off(db.device.wifi_calling_enabled)}."


@tool(kind="write")
def toggle_wifi_calling(db: TelecomUserDB) -> str:
    """Toggles Wi-Fi Calling ON or OFF. This feature allows you to make and receive calls over Wi-Fi instead of the cellular network, which can help in areas with weak cellular signal.

    Returns the new Wi-Fi Calling status.
    """  # noqa: E501
    device = db.device
    device.wifi_calling_enabled = not device.wifi_calling_enabled
    return phone.with_status_bar(f"Wi-Fi Calling is now {_on_off(device.wifi_calling_enabled)}.", device)


@tool(kind="read")
def check_vpn_status(db: TelecomUserDB) -> str:
    """Checks if you're using a VPN (Virtual Private Network) connection. Shows if a VPN is active, connected, and displays any available connection details."""  # noqa: E501
    device = db.device
    if device.vpn_connected:
        if device.vpn_details is None:
            return "VPN is ON and connected (no specific details available)."
        # The python-mode dump, printed as a dict: the enum shows its repr, as in tau2.
        return f"VPN is ON and connected. Details: {device.vpn_details.model_dump()}"
    if device.vpn_enabled_setting:
        return "VPN is turned ON in settings, but currently not connected."
    return "VPN is turned OFF."


@tool(kind="write")
def connect_vpn(db: TelecomUserDB) -> str:
    """Connects to your VPN (Virtual Private Network)."""
    device = db.device
    if device.vpn_connected:
        return "VPN already connected."
    device.vpn_connected = True
    device.vpn_details = phone.VPN_DEFAULT.model_copy(deep=True)
    return phone.with_status_bar("VPN connected successfully.", device)


@tool(kind="write")
def disconnect_vpn(db: TelecomUserDB) -> str:
    """Disconnects any active VPN (Virtual Private Network) connection. Stops routing your internet traffic through a VPN server, which might affect connection speed or access to content."""  # noqa: E501
    device = db.device
    message = "VPN disconnected successfully." if phone.drop_vpn(device) else "No active VPN connection to disconnect."
    return phone.with_status_bar(message, device)


@tool(kind="read")
def check_installed_apps(db: TelecomUserDB) -> str:
    """Returns the name of all installed apps on the phone."""
    return f"The following apps are installed on the phone: {', '.join(db.device.app_statuses)}"


def _granted(db: TelecomUserDB, app_name: str) -> list[str] | None:
    """The permissions an app holds (lowercase names), or None if the app is not installed."""
    app = db.device.app_statuses.get(app_name)
    if app is None:
        return None
    return [name.replace("_", " ").lower() for name, on in app.permissions.model_dump().items() if on]


@tool(kind="read")
def check_app_status(db: TelecomUserDB, app_name: str) -> str:
    """Checks detailed information about a specific app. Shows its permissions and background data usage settings."""
    granted = _granted(db, app_name)
    if granted is None:
        return f"App '{app_name}' not found on this phone."
    if not granted:
        return f"Status for App: {app_name}\n - Permissions: None granted."
    return "\n".join([f"Status for App: {app_name}", " - Permissions Granted:", *(f"   - {p}" for p in granted)])


@tool(kind="read")
def check_app_permissions(db: TelecomUserDB, app_name: str) -> str:
    """Checks what permissions a specific app currently has. Shows if the app has access to features like storage, camera, location, etc."""  # noqa: E501
    granted = _granted(db, app_name)
    if granted is None:
        return f"App '{app_name}' not found on this phone."
    if not granted:
        return f"App '{app_name}' currently has no permissions granted."
    return f"App '{app_name}' has permission for: {', '.join(granted)}."


@tool(kind="write")
def grant_app_permission(db: TelecomUserDB, app_name: str, permission: str) -> str:
    """Gives a specific permission to an app (like access to storage, camera, or location). Required for some app functions to work properly.

    Args:
        app_name: The name of the app to grant the permission to.
        permission: The permission to grant, should be lowercase.
    """  # noqa: E501
    device = db.device
    app = device.app_statuses.get(app_name)
    permission = permission.lower()
    if app is None:
        outcome = f"Error. App '{app_name}' not found. Cannot grant permission."
    elif permission not in type(app.permissions).model_fields:
        tracked = list(type(app.permissions).model_fields)
        outcome = f"Error. Permission '{permission}' not tracked for app '{app_name}', available permissions: {tracked}"
    else:
        setattr(app.permissions, permission, True)
        outcome = f"Success. Permission '{permission}' granted to app '{app_name}'."
    return phone.with_status_bar(outcome, device)


@tool(kind="read")
def can_send_mms(db: TelecomUserDB) -> str:
    """Checks if the default messaging app can send MMS messages."""
    able = phone.can_send_mms(db.device, db.surroundings)
    return f"Your messaging app {'can' if able else 'cannot'} send MMS messages."


@tool(kind="write")
def reboot_device(db: TelecomUserDB) -> str:
    """Restarts your phone completely. This can help resolve many temporary software glitches by refreshing all running services and connections."""  # noqa: E501
    device = db.device
    steps = phone.reboot(device, db.surroundings)
    return phone.with_status_bar("\n".join(steps), device)


@tool(kind="read")
def check_payment_request(db: TelecomUserDB) -> str:
    """Checks if the agent has sent you a payment request."""
    request = db.surroundings.payment_request
    if request is None:
        return "No payment request has been made."
    return f"You have a payment request for bill {request.bill_id} of {request.amount_due} USD."


@tool(kind="write")
def make_payment(db: TelecomUserDB) -> str:
    """Makes a payment for the bill that the agent has sent you."""
    request = db.surroundings.payment_request
    if request is None:
        return "You do not have a payment request."
    # Only the user's side is touched here; the sync hook marks the carrier's bill as paid.
    request.paid = True
    return f"Payment of {request.amount_due} USD has been made for bill {request.bill_id}."


USER_TOOLS = [
    check_status_bar,
    check_network_status,
    check_network_mode_preference,
    set_network_mode_preference,
    run_speed_test,
    toggle_airplane_mode,
    check_sim_status,
    reseat_sim_card,
    toggle_data,
    toggle_roaming,
    check_data_restriction_status,
    toggle_data_saver_mode,
    check_apn_settings,
    set_apn_settings,
    reset_apn_settings,
    check_wifi_status,
    toggle_wifi,
    check_wifi_calling_status,
    toggle_wifi_calling,
    check_vpn_status,
    connect_vpn,
    disconnect_vpn,
    check_installed_apps,
    check_app_status,
    check_app_permissions,
    grant_app_permission,
    can_send_mms,
    reboot_device,
    check_payment_request,
    make_payment,
]
"""All user tools, in tau2's order."""
