"""Driving the GPU Environments panel in a Lab page (shared by the browser tests)."""

from __future__ import annotations

from typing import Any

KERNEL_START_MS = 180_000
UI_MS = 60_000
PANEL = "#gpuenv-panel"


def row(page: Any, env: dict[str, Any]) -> Any:
    return page.locator(f'{PANEL} li.jp-GpuEnv-env[data-env-id="{env["id"]}"]')


def wait_for_kernel(page: Any, kernel_name: str) -> None:
    """Until the notebook in the main area runs an idle kernel of ``kernel_name``."""
    page.wait_for_function(
        """(name) => {
            const widget = window.jupyterapp.shell.currentWidget;
            const kernel = widget && widget.sessionContext && widget.sessionContext.session
                && widget.sessionContext.session.kernel;
            return !!kernel && kernel.name === name && kernel.status === 'idle';
        }""",
        arg=kernel_name,
        timeout=KERNEL_START_MS,
    )


def open_panel(page: Any) -> None:
    if not page.locator(PANEL).is_visible():
        page.click('.lm-TabBar-tab[data-id="gpuenv-panel"]')
    page.wait_for_selector(PANEL, state="visible")


def set_sidebar_width(page: Any, width: int) -> None:
    """Drag the left sidebar's split handle until the panel is ``width`` px wide."""
    for _ in range(4):
        box = page.locator(PANEL).bounding_box()
        if abs(box["width"] - width) <= 1:
            return
        handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
        hbox = handle.bounding_box()
        x, y = hbox["x"] + hbox["width"] / 2, hbox["y"] + hbox["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + (width - box["width"]), y, steps=5)
        page.mouse.up()
    assert abs(page.locator(PANEL).bounding_box()["width"] - width) <= 1


def overflowing(page: Any) -> list[str]:
    """Elements of the panel wider than their box (a layout break at this width)."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll(
                '#gpuenv-panel, #gpuenv-panel .jp-GpuEnv-env, #gpuenv-panel .jp-GpuEnv-section'))
            .filter(el => el.scrollWidth > el.clientWidth + 1)
            .map(el => el.className + ' ' + el.scrollWidth + '>' + el.clientWidth)"""
    )


def settle(page: Any) -> None:
    """Let styles, fonts and transitions finish before a screenshot."""
    page.evaluate(
        "() => document.fonts.ready.then(() => new Promise(r =>"
        " requestAnimationFrame(() => requestAnimationFrame(r))))"
    )
    page.wait_for_timeout(600)


def lab_page(browser: Any, url: str) -> tuple[Any, Any]:
    """A new browser context and a Lab page loaded up to the panel's sidebar tab."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(UI_MS)
    page.goto(url)
    page.wait_for_selector('.lm-TabBar-tab[data-id="gpuenv-panel"]', timeout=120_000)
    return context, page


def switch_theme(page: Any, theme: str) -> None:
    """Apply a Lab theme and wait until the panel is painted with it."""
    before = page.eval_on_selector(PANEL, "el => getComputedStyle(el).backgroundColor")
    page.evaluate(
        "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})",
        theme,
    )
    page.wait_for_selector(f"body[data-jp-theme-name='{theme}']", state="attached")
    page.wait_for_function(
        "(before) => getComputedStyle(document.querySelector('#gpuenv-panel')).backgroundColor"
        " !== before",
        arg=before,
    )
    settle(page)


def screenshot_panel(page: Any, path: Any) -> None:
    """The panel alone, with no focus ring left over from the clicks before."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    settle(page)
    page.locator(PANEL).screenshot(path=str(path))
