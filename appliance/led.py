"""The status LED: the bridge's state, readable from across the room.

On a bridge the watchdog's process drives it (``sensor-bridge watchdog``,
appliance/watchdog.py); ``sensor-bridge led`` runs it alone, in the foreground.

``PATTERNS`` below is the one table of states and what the LED does for each:
the service shows it, ``sensor-bridge led table`` prints it as the README's
markdown table, ``sensor-bridge led test`` plays every pattern once.

The state shown is the bridge's, by the one rule set of ``bridge_state``
(the worst of the enabled services' states, this one's included; a rejected
boot config or outbox damage is an error; maintenance mode overrides it); a
missing or invalid config file shows ``no-config``, and the service keeps
running and re-reading the file until it is fixed. A single LED on a pin is the default, an RGB LED adds colour. With no
GPIO on the machine it says so once and keeps writing its status file.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

from .bridge_state import bridge_state
from .config import Config, ConfigWatch, LedConfig
from .service import Service, run_service
from .status import MAINTENANCE, UNCLAIMED, write_status

log = logging.getLogger("sensor-bridge.led")

FPS = 25  # brightness steps per second of a fade
LOOK_EVERY_S = 0.5
# No config ever read: drive the documented default pin, so a fresh box can say "no-config".
NO_CONFIG_LED = LedConfig(backend="gpiozero", pin=17)


def _breathing(period_s: float) -> tuple[tuple[float, float], ...]:
    half = round(period_s * FPS / 2)
    rise = [((i + 1) / half, 1 / FPS) for i in range(half)]
    return tuple(rise + rise[::-1][1:] + [(0.0, 1 / FPS)])


@dataclass(frozen=True)
class Pattern:
    """One state's look: ``steps`` are (brightness 0..1, seconds), played round and round."""

    meaning: str
    led: str
    colour: str
    rgb: tuple[float, float, float]
    steps: tuple[tuple[float, float], ...]


PATTERNS: dict[str, Pattern] = {
    "starting": Pattern(
        "booting, waiting for time sync or first poll",
        "slow pulse / breathing (3 s)",
        "blue",
        (0.0, 0.0, 1.0),
        _breathing(3.0),
    ),
    "ok": Pattern(
        "all sensors polled recently, outbox draining",
        "solid on",
        "green",
        (0.0, 1.0, 0.0),
        ((1.0, 1.0),),
    ),
    "degraded": Pattern(
        "some sensors failing, or uplink down and data buffering safely",
        "slow blink (1 Hz)",
        "yellow",
        (1.0, 0.6, 0.0),
        ((1.0, 0.5), (0.0, 0.5)),
    ),
    "error": Pattern(
        "no sensor reachable, auth rejected, outbox shedding data, disk full",
        "fast blink (4 Hz)",
        "red",
        (1.0, 0.0, 0.0),
        ((1.0, 0.125), (0.0, 0.125)),
    ),
    "no-config": Pattern(
        "no valid config; the reason is in sensor-bridge-error.txt on the boot partition",
        "double blink every 2 s",
        "magenta",
        (1.0, 0.0, 1.0),
        ((1.0, 0.2), (0.0, 0.2), (1.0, 0.2), (0.0, 1.4)),
    ),
    UNCLAIMED: Pattern(
        "waiting to be claimed: its code is in sensor-bridge-claim.txt on the boot partition",
        "three short flashes every 3 s",
        "cyan",
        (0.0, 1.0, 1.0),
        ((1.0, 0.15), (0.0, 0.15), (1.0, 0.15), (0.0, 0.15), (1.0, 0.15), (0.0, 2.25)),
    ),
    MAINTENANCE: Pattern(
        "a person switched maintenance mode on over SSH",
        "short flash every 5 s",
        "white",
        (1.0, 1.0, 1.0),
        ((1.0, 0.2), (0.0, 4.8)),
    ),
}


def markdown_table() -> str:
    """The README's LED table, made from PATTERNS."""
    rows = ["| state | meaning | LED | RGB LED |", "| --- | --- | --- | --- |"]
    rows += [f"| {state} | {p.meaning} | {p.led} | {p.colour} |" for state, p in PATTERNS.items()]
    return "\n".join(rows)


# ------------------------------------------------------------------ the light


def _pins(led: LedConfig) -> str:
    return "GPIO" + (", ".join(str(p) for p in led.rgb) if led.rgb else str(led.pin))


class Light:
    """An LED or RGB LED on gpiozero, playing one pattern at a time from a small thread."""

    def __init__(self, device: Any, rgb: bool, pwm: bool, description: str) -> None:
        self.device = device
        self.rgb = rgb
        self.pwm = pwm
        self.description = description
        self.state: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, led: LedConfig, pin_factory: Any = None) -> Light:
        """Claim the pins; raises when there is no GPIO (or the pins are busy)."""
        from gpiozero import LED, PWMLED, RGBLED
        from gpiozero.exc import PinPWMUnsupported

        common = {"active_high": led.active_high, "pin_factory": pin_factory}
        where = _pins(led)
        if led.rgb:
            try:
                return cls(RGBLED(*led.rgb, pwm=True, **common), True, True, f"RGB LED on {where}")
            except PinPWMUnsupported:
                device = RGBLED(*led.rgb, pwm=False, **common)
                return cls(
                    device, True, False, f"RGB LED on {where} (no PWM: fades show as blinks)"
                )
        try:
            return cls(PWMLED(led.pin, **common), False, True, f"LED on {where}")
        except PinPWMUnsupported:
            device = LED(led.pin, **common)
            return cls(device, False, False, f"LED on {where} (no PWM: fades show as blinks)")

    def show(self, state: str) -> None:
        """Play ``state``'s pattern from now on (nothing changes if it already plays)."""
        if state == self.state:
            return
        self._halt()
        self.state = state
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._play, args=(PATTERNS[state], self._stop), name=f"led-{state}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._halt()
        self.device.off()
        self.device.close()

    def _halt(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.state = self._thread = None

    def _play(self, pattern: Pattern, stop: threading.Event) -> None:
        due = time.monotonic()
        last: Any = None
        while True:
            for level, seconds in pattern.steps:
                value = self._value(pattern, level)
                if value != last:
                    self.device.value = last = value
                due += seconds
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
            if time.monotonic() - due > 1.0:
                due = time.monotonic()  # fell far behind (a suspended process): no catch-up burst

    def _value(self, pattern: Pattern, level: float) -> Any:
        if not self.pwm:
            level = 1.0 if level >= 0.5 else 0.0
        if not self.rgb:
            return level
        return tuple(c * level if self.pwm else float(c * level >= 0.5) for c in pattern.rgb)


# ------------------------------------------------------------------ the service


class LedService(Service):
    """What ``sensor-bridge led`` does: work out the bridge's state, show it, report it."""

    step_every_s = LOOK_EVERY_S

    def __init__(self, watch: ConfigWatch, stop_event: threading.Event | None = None) -> None:
        super().__init__(stop_event)
        self.watch = watch
        self.light: Light | None = None
        self.light_for: LedConfig | None = None
        self.light_note = "not opened yet"
        self.showing, self.reason = "starting", ""
        self.logged: str | None = None

    def settings(self) -> LedConfig:
        """The LED as configured; from a broken file what can be read of it, else the default pin."""
        if self.watch.config:
            return self.watch.config.led
        return self.watch.partial(LedConfig) or NO_CONFIG_LED

    def bridge_state(self, config: Config | None) -> tuple[str, str]:
        """(state to show, why): appliance/bridge_state.py's rules, the LED's own state included."""
        problem = f"config {self.watch.path}: {'; '.join(self.watch.problems or ['unreadable'])}"
        state = self.own_state()
        own = (
            "led",
            state,
            "its LED cannot be driven (see light in led.json)" if state == "degraded" else "ok",
        )
        bridge = bridge_state(config, config_problem=problem, own=own, started=self.started)
        return bridge.state, bridge.reason

    def step(self) -> None:
        """One look: re-read the config if it changed, follow the LED settings, show the state."""
        config = self.watch.poll()
        wanted = self.settings()
        if wanted != self.light_for:
            self._reopen(wanted)
        self.showing, self.reason = self.bridge_state(config)
        if self.showing != self.logged:
            log.info("showing %s: %s", self.showing, self.reason)
            self.logged, self.report_due = self.showing, True  # led.json follows a change at once
        if self.light:
            self.light.show(self.showing)

    def _reopen(self, led: LedConfig) -> None:
        if self.light:
            self.light.close()
            self.light = None
        self.light_for = led
        if led.backend == "none":
            self.light_note = "no LED configured (led.backend = none)"
            return
        try:
            with warnings.catch_warnings(
                record=True
            ) as fallbacks:  # one log line each, not a traceback
                warnings.simplefilter("always")
                try:
                    self.light = Light.open(led)
                finally:
                    for warning in fallbacks:
                        log.info("gpiozero: %s", warning.message)
        except Exception as exc:  # no GPIO at all, a busy pin, a missing pin library
            self.light_note = f"cannot drive the LED on {_pins(led)}: {type(exc).__name__}: {exc}"
            log.warning("%s; the state is still reported in led.json", self.light_note)
            return
        self.light_note = self.light.description
        log.info("showing the bridge's state on the %s", self.light.description)

    def own_state(self) -> str:
        if self.watch.problems:
            return "no-config"
        if self.light is None and self.light_for and self.light_for.backend != "none":
            return "degraded"
        return "ok"

    def write_status(self) -> None:
        write_status(
            self.watch.paths.run_dir,
            "led",
            self.own_state(),
            showing=self.showing,
            pattern=PATTERNS[self.showing].led,
            reason=self.reason,
            light=self.light_note,
            config_problems=self.watch.problems,
        )

    def report(self) -> str:
        self.write_status()
        return f"showing {self.showing}"

    def shutdown(self) -> None:
        if self.light:
            self.light.close()


# ------------------------------------------------------------------ commands


def _service(args: argparse.Namespace) -> int:
    return run_service(lambda stop: LedService(ConfigWatch(args.config), stop))


def _test(args: argparse.Namespace) -> int:
    service = LedService(ConfigWatch(args.config))
    service.watch.poll()
    led = service.settings()
    if led.backend == "none":
        print(f'{args.config}: led.backend is "none": there is no LED to test', file=sys.stderr)
        return 2
    try:
        light = Light.open(led)
    except Exception as exc:
        print(
            f"cannot drive the LED: {type(exc).__name__}: {exc}\n"
            "(sensor-bridge-watchdog.service drives the LED and holds the pin: systemctl stop it first)",
            file=sys.stderr,
        )
        return 1
    print(f"playing every pattern on the {light.description}, {args.each:g} s each", flush=True)
    try:
        for state, pattern in PATTERNS.items():
            print(f"{state}: {pattern.led}, {pattern.colour} on an RGB LED", flush=True)
            light.show(state)
            time.sleep(args.each)
    finally:
        light.close()
    return 0


def _table(args: argparse.Namespace) -> int:
    print(markdown_table())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "led",
        help="the LED alone (on a bridge the watchdog drives it); `led test` plays every pattern,"
        " `led table` prints them",
    )
    actions = parser.add_subparsers(dest="led_action", metavar="ACTION")
    parser.set_defaults(func=_service)
    test = actions.add_parser("test", help="play every pattern once, printing its name")
    test.add_argument(
        "--each", type=float, default=5.0, metavar="S", help="seconds per pattern (default 5)"
    )
    test.set_defaults(func=_test)
    actions.add_parser("table", help="print the state/pattern table as markdown").set_defaults(
        func=_table
    )
