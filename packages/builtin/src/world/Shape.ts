/**
 * Geometry of the four shapes in local coordinates: `u = (x - cx) / r`, `v = (y - cy) / r`, with y
 * pointing down and `r` the half-size, so every shape fills the square [-1, 1]^2 it is named for:
 * circle u^2 + v^2 <= 1, square max(|u|, |v|) <= 1, triangle with its apex up at (0, -1) and its base
 * along v = 1, diamond |u| + |v| <= 1. All four are symmetric under a horizontal flip, so the flip
 * augmentation of the training pipeline never turns one into another.
 */
import type { ShapeName } from "./Vocabulary.js"

export const inside = (shape: ShapeName, u: number, v: number): boolean => {
  switch (shape) {
    case "circle":
      return u * u + v * v <= 1
    case "square":
      return Math.abs(u) <= 1 && Math.abs(v) <= 1
    case "triangle":
      return v <= 1 && 2 * Math.abs(u) <= v + 1
    case "diamond":
      return Math.abs(u) + Math.abs(v) <= 1
  }
}

/** Area in units of r^2. */
export const AREA: Readonly<Record<ShapeName, number>> = Object.freeze({ circle: Math.PI, square: 4, triangle: 2, diamond: 2 })

/** Vertical offset of the centroid from the centre, in units of r (a triangle's centroid sits 1/3 below). */
export const CENTROID_V: Readonly<Record<ShapeName, number>> = Object.freeze({ circle: 0, square: 0, triangle: 1 / 3, diamond: 0 })

/**
 * The shape of a given kind with the given area and centroid (in pixels): what a template fitted to a
 * detected region by its moments looks like.
 */
export const fitByMoments = (shape: ShapeName, area: number, cx: number, cy: number): { x: number; y: number; halfSize: number } => {
  const halfSize = Math.sqrt(area / AREA[shape])
  return { x: cx, y: cy - CENTROID_V[shape] * halfSize, halfSize }
}
