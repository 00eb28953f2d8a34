"""Draw the web demo's app icons (web_demo/icons/*.png) with Pillow: run once, commit the PNGs.

The sizes are those browsers ask a web app manifest for: 192 and 512 pixels ("any" purpose: a rounded tile with a
transparent corner) and the same as "maskable" (the tile fills the square; the mark stays inside the centre circle of
80% that every platform's mask keeps), 180 for iOS's home screen (apple-touch-icon) and 32 for the tab.

    .venv/bin/python tools/make_web_icons.py
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

THEME = (26, 95, 180)        # #1a5fb4, the manifest's theme_color
ACCENT = (255, 196, 0)
OUT = Path(__file__).resolve().parent.parent / "web_demo" / "icons"


def draw(size: int, maskable: bool) -> Image.Image:
    """A phone outline with "EMO" on it: the mark spans 56% of a maskable icon (inside its 80% safe circle)."""
    scale = 4  # drawn large, then reduced: smooth edges
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    if maskable:
        d.rectangle((0, 0, s, s), fill=THEME)
    else:
        d.rounded_rectangle((0, 0, s - 1, s - 1), radius=s // 5, fill=THEME)
    mark = 0.56 if maskable else 0.72
    w, h = s * mark * 0.62, s * mark
    x0, y0 = (s - w) / 2, (s - h) / 2
    line = max(2, round(s * 0.035))
    d.rounded_rectangle((x0, y0, x0 + w, y0 + h), radius=s * 0.06, outline="white", width=line)
    d.rounded_rectangle((x0 + w * 0.38, y0 + h * 0.06, x0 + w * 0.62, y0 + h * 0.06 + line), radius=line / 2,
                        fill="white")
    font = ImageFont.load_default(size=round(w * 0.36))
    d.text((s / 2, s / 2 - h * 0.04), "EMO", font=font, fill="white", anchor="mm")
    d.rounded_rectangle((x0 + w * 0.2, y0 + h * 0.7, x0 + w * 0.8, y0 + h * 0.7 + line * 1.4), radius=line,
                        fill=ACCENT)
    return image.resize((size, size), Image.LANCZOS)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, size, maskable in (("icon-192.png", 192, False), ("icon-512.png", 512, False),
                                 ("maskable-192.png", 192, True), ("maskable-512.png", 512, True),
                                 ("apple-touch-icon.png", 180, True), ("favicon-32.png", 32, False)):
        draw(size, maskable).save(OUT / name, optimize=True)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
