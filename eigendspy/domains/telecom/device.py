"""The phone simulator behind the telecom user tools: network search, status bar, speed, MMS.

These are plain functions over the user DB's ``device`` and ``surroundings`` so that tools,
init functions and assertions share one model of the phone. Functions that change the phone
(``search_network``, ``drop_vpn``) must only be given the writable copies a write tool or init
function receives; everything else only reads.

Behaviour pinned by tau2's probes (see README.md): a network search is the *only* moment the
phone looks at the carrier (line active?) and at its radio environment, so a suspended or
resumed line changes the phone's connection only at the next search (airplane toggle, reboot,
SIM reseat, data/roaming toggle, network-mode or APN change).
"""

from __future__ import annotations

from eigendspy.domains.telecom.user_db import (
    APNNames,
    APNSettings,
    NetworkModePreference,
    NetworkStatus,
    NetworkTechnology,
    PerformanceLevel,
    PhoneDevice,
    SignalStrength,
    SimStatus,
    Surroundings,
    VpnDetails,
)

NO_SIGNAL = "\U0001f4f5 No Signal"
SIGNAL_ICONS = {
    SignalStrength.NONE: NO_SIGNAL,
    SignalStrength.POOR: "\U0001f4f6\u00b9 Poor",
    SignalStrength.FAIR: "\U0001f4f6\u00b2 Fair",
    SignalStrength.GOOD: "\U0001f4f6\u00b3 Good",
    SignalStrength.EXCELLENT: "\U0001f4f6\u2074 Excellent",
}
AIRPLANE_ICON = "\u2708\ufe0f Airplane Mode"
DATA_ON_ICON = "\U0001f4f1 Data Enabled"
DATA_OFF_ICON = "\U0001f4f5 Data Disabled"
DATA_SAVER_ICON = "\U0001f53d Data Saver"
WIFI_ICON = "\U0001f4e1"
VPN_ICON = "\U0001f512 VPN Connected"
BATTERY_ICON = "\U0001f50b"

PREFERRED_TECH = {
    NetworkModePreference.FOUR_G_ONLY: NetworkTechnology.FOUR_G,
    NetworkModePreference.THREE_G_ONLY: NetworkTechnology.THREE_G,
    NetworkModePreference.TWO_G_ONLY: NetworkTechnology.TWO_G,
}
"""Single-technology modes; ``4g_5g_preferred`` picks 5G when the area has any 5G signal."""

SPEED_RANGE_MBPS = {
    NetworkTechnology.TWO_G: (0.1, 0.4),
    NetworkTechnology.THREE_G: (1.0, 5.0),
    NetworkTechnology.FOUR_G: (10.0, 100.0),
    NetworkTechnology.FIVE_G: (50.0, 500.0),
}
"""Typical download range per technology; the simulated speed starts from its midpoint."""
SIGNAL_FACTOR = {
    SignalStrength.POOR: 0.2,
    SignalStrength.FAIR: 0.5,
    SignalStrength.GOOD: 0.8,
    SignalStrength.EXCELLENT: 1.0,
}
POOR_VPN_FACTOR = 0.1
DATA_SAVER_FACTOR = 0.2
SPEED_LABELS = (
    (1.0, "Very Poor", "Connection is very slow. Basic web browsing might be difficult."),
    (5.0, "Poor", "Connection is slow. Web browsing may be sluggish, streaming difficult."),
    (25.0, "Fair", "Connection is okay for web browsing and some standard definition streaming."),
    (100.0, "Good", "Connection is good for most activities, including HD streaming."),
    (float("inf"), "Excellent", "Connection is very fast."),
)
"""(upper bound exclusive, label, advice) for a measured speed in Mbps."""

VPN_DEFAULT = VpnDetails(server_address="192.168.1.1", protocol="OpenVPN", server_performance=PerformanceLevel.POOR)
"""What ``connect_vpn`` connects to: always a poor server.

Why poor: tau2 builds ``connect_vpn``'s details from one class-level default object, and its
``break_vpn`` init function sets that shared object's performance to poor in place, so in tau2 the
result depends on process history (good until any task has run ``break_vpn``, poor after). tau2's
recorded oracle ran after such tasks; eigendspy always answers the mutated (poor) case, with a fresh
copy per device, so the outcome does not depend on what ran before.
"""


def effective_sim_status(device: PhoneDevice) -> SimStatus:
    """A SIM that is physically out of its tray reads as missing, whatever its lock state."""
    return SimStatus.MISSING if device.sim_card_missing else device.sim_card_status


def _lose_service(device: PhoneDevice) -> None:
    device.network_connection_status = NetworkStatus.NO_SERVICE
    device.network_technology_connected = NetworkTechnology.NONE
    device.network_signal_strength = SignalStrength.NONE


def search_network(device: PhoneDevice, surroundings: Surroundings) -> None:
    """Re-register the phone on the cellular network (mutates ``device``).

    A working SIM attaches to the technology its network-mode preference allows and takes that
    technology's signal in the user's area (even a ``none`` signal counts as attached, as in
    tau2). Airplane mode, a broken APN or a line the carrier does not keep active all end in
    no service, whatever the SIM says.
    """
    if effective_sim_status(device) == SimStatus.ACTIVE:
        preference = device.network_mode_preference
        if preference in PREFERRED_TECH:
            tech = PREFERRED_TECH[preference]
        else:
            has_5g = surroundings.signal_strength.get(NetworkTechnology.FIVE_G, SignalStrength.NONE)
            tech = NetworkTechnology.FOUR_G if has_5g == SignalStrength.NONE else NetworkTechnology.FIVE_G
        device.network_connection_status = NetworkStatus.CONNECTED
        device.network_technology_connected = tech
        device.network_signal_strength = surroundings.signal_strength.get(tech, SignalStrength.NONE)
    else:
        _lose_service(device)
    broken_apn = device.active_apn_settings.apn_name == APNNames.BROKEN
    if device.airplane_mode or broken_apn or not surroundings.line_active:
        _lose_service(device)


def forget_wifi_network(device: PhoneDevice) -> None:
    """Drop the current Wi-Fi association (radio off, airplane mode)."""
    device.wifi_connected = False
    device.wifi_ssid = None
    device.wifi_signal_strength = SignalStrength.NONE


def drop_vpn(device: PhoneDevice) -> bool:
    """Disconnect the VPN; returns whether one was connected."""
    if not device.vpn_connected:
        return False
    device.vpn_connected = False
    device.vpn_details = None
    return True


def flip_airplane_mode(device: PhoneDevice, surroundings: Surroundings) -> None:
    """Airplane mode on drops Wi-Fi and the VPN; off starts a fresh network search (used by the tool and by init)."""
    turning_on = not device.airplane_mode
    device.airplane_mode = turning_on
    if turning_on:
        forget_wifi_network(device)
        drop_vpn(device)
    else:
        device.network_connection_status = NetworkStatus.SEARCHING
        if device.wifi_enabled:
            forget_wifi_network(device)
    search_network(device, surroundings)


def reboot(device: PhoneDevice, surroundings: Surroundings) -> list[str]:
    """Restart the phone: apply a pending APN reset, then search again. Returns the progress lines."""
    steps = []
    if device.active_apn_settings.reset_at_reboot:
        steps.append("Resetting APN settings...")
        device.active_apn_settings = APNSettings()
    steps.append("Restarting network services...")
    device.network_connection_status = NetworkStatus.SEARCHING
    search_network(device, surroundings)
    return steps


def mobile_data_working(device: PhoneDevice, surroundings: Surroundings) -> bool:
    """Whether cellular data would carry traffic right now.

    Judged from the phone's own last registration (not from the carrier's current line state)
    plus the roaming rule abroad (both the phone's roaming switch and the line's roaming
    permission are needed) and the plan's data allowance.
    """
    if device.airplane_mode or device.network_signal_strength == SignalStrength.NONE:
        return False
    if device.network_connection_status == NetworkStatus.NO_SERVICE:
        return False
    if surroundings.is_abroad and not (device.roaming_enabled and surroundings.roaming_allowed):
        return False
    return device.data_enabled and not surroundings.mobile_data_usage_exceeded


def measure_speed(device: PhoneDevice, surroundings: Surroundings) -> tuple[float | None, str]:
    """(Mbps rounded to 2 decimals, label), or ``(None, "No Connection")`` without working data."""
    if not mobile_data_working(device, surroundings):
        return None, "No Connection"
    factor = 1.0
    details = device.vpn_details
    if device.vpn_connected and details is not None and details.server_performance == PerformanceLevel.POOR:
        factor = POOR_VPN_FACTOR
    if device.data_saver_mode:
        factor *= DATA_SAVER_FACTOR
    low, high = SPEED_RANGE_MBPS.get(device.network_technology_connected, (0.0, 0.0))
    speed = round((low + high) / 2.0 * SIGNAL_FACTOR.get(device.network_signal_strength, 0.0) * factor, 2)
    return speed, speed_label(speed)[0]


def speed_label(speed: float) -> tuple[str, str]:
    """(label, advice) for a speed in Mbps."""
    for bound, label, advice in SPEED_LABELS:
        if speed < bound:
            return label, advice
    return SPEED_LABELS[-1][1], SPEED_LABELS[-1][2]


def can_send_mms(device: PhoneDevice, surroundings: Surroundings) -> bool:
    """MMS needs working mobile data on 3G or better, an MMSC URL, the messaging app with SMS and
    storage permissions, and Wi-Fi calling must not be set to route MMS over Wi-Fi (the carrier
    does not support that)."""
    if not mobile_data_working(device, surroundings):
        return False
    if device.network_technology_connected == NetworkTechnology.TWO_G:
        return False
    if device.wifi_calling_enabled and device.wifi_calling_mms_over_wifi:
        return False
    if device.active_apn_settings.mmsc_url is None:
        return False
    app = device.app_statuses.get("messaging")
    return app is not None and app.permissions.sms and app.permissions.storage


def status_bar(device: PhoneDevice) -> str:
    """The icons at the top of the screen, joined with `` | ``."""
    icons: list[str] = []
    if device.airplane_mode:
        icons.append(AIRPLANE_ICON)
    else:
        icons.append(SIGNAL_ICONS.get(device.network_signal_strength, NO_SIGNAL))
        attached = device.network_technology_connected != NetworkTechnology.NONE
        if attached:
            icons.append(device.network_technology_connected.value)
        if device.data_enabled and attached:
            icons.append(DATA_ON_ICON)
            if device.data_saver_mode:
                icons.append(DATA_SAVER_ICON)
        else:
            icons.append(DATA_OFF_ICON)
    if device.wifi_enabled and device.wifi_connected:
        icons.append(f"{WIFI_ICON} Connected to {device.wifi_ssid}" if device.wifi_ssid else f"{WIFI_ICON} Enabled")
    if device.vpn_connected:
        icons.append(VPN_ICON)
    icons.append(f"{BATTERY_ICON} {device.battery_level}%")
    return " | ".join(icons)


def with_status_bar(message: str, device: PhoneDevice) -> str:
    """Most user actions answer with what happened plus the status bar the user now sees."""
    return f"{message}\nStatus Bar: {status_bar(device)}"
