/**
 * Differentiable primitives whose backward passes stay on wasm's fast kernels.
 *
 * tfjs's own gradients use matMul with transpose flags, batched matMul and Conv2DBackpropInput, which on
 * wasm fall to naive loops ~10x slower than XNNPACK; and wasm has no Conv2DBackpropFilter at all
 * (docs/reference/tfjs-backends.md §1.3, §2.2). Here every backward is made of forward matMuls
 * with explicit transposes and forward convolutions with flipped filters. A `*Frozen` variant closes
 * over its weight so that no weight gradient is computed.
 */
import { tf } from "../tensor/Tf.js"

type T = tf.Tensor

interface Gradient {
  readonly value: T
  readonly gradFunc: (dy: T, saved: Array<T>) => T | Array<T>
}

/**
 * `tf.customGrad` with usable types: `f` gets the inputs and a save function. The gradient function runs
 * inside `tf.tidy`: tfjs does not tidy custom gradients itself, so their temporaries would otherwise
 * live until the whole backward pass ends.
 */
// oxlint-disable-next-line no-explicit-any
export const customGrad = <F extends (...args: Array<T>) => T>(f: (...args: Array<any>) => Gradient): F => {
  const withGradient = tf.customGrad(((...args: Array<unknown>) => {
    const g = f(...args)
    return { value: g.value, gradFunc: (dy: T, saved: Array<T>) => tf.tidy(() => g.gradFunc(dy, saved)) }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  // Outside a gradient scope (sampling, evaluation) the custom-gradient machinery is pure overhead:
  // measured 0.2 ms per call on wasm, a third of a small UNet's forward.
  const plain = (...args: Array<T>) => tf.tidy(() => f(...args, () => {}).value)
  return ((...args: Array<T>) => (recording() ? withGradient(...args) : plain(...args))) as unknown as F
}

/** Whether a gradient tape is recording (inside `tf.grads` and friends). */
const recording = () => (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0

const t2 = (x: T) => tf.transpose(x, [1, 0])
const t3 = (x: T) => tf.transpose(x, [0, 2, 1])

/** `a [M,K] @ b [K,N]`, both differentiable. */
export const matMul = customGrad<(a: T, b: T) => T>((a: T, b: T, save: tf.GradSaveFunc) => {
  save([a, b])
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: T, [a, b]: Array<T>) => [tf.matMul(dy, t2(b!)), tf.matMul(t2(a!), dy)]
  }
})

/**
 * `x [M,K] @ w [K,N]` with `w` frozen: only `x` gets a gradient. `w` is saved like an input (tfjs
 * disposes tensors made inside a gradient scope before the backward pass unless they are saved).
 */
export const matMulFrozen = (x: T, w: T): T =>
  customGrad<(x: T) => T>((x: T, save: tf.GradSaveFunc) => {
    save([w])
    return {
      value: tf.matMul(x, w),
      gradFunc: (dy: T, [w]: Array<T>) => tf.matMul(dy, t2(w!))
    }
  })(x)

/** Batched product `a [G,M,K] @ b [G,K,N]` without transpose flags in either direction. */
export const batchMatMul = customGrad<(a: T, b: T) => T>((a: T, b: T, save: tf.GradSaveFunc) => {
  save([a, b])
  return {
    value: bmm(a, b),
    gradFunc: (dy: T, [a, b]: Array<T>) => [bmm(dy, t3(b!)), bmm(t3(a!), dy)]
  }
})

const bmm = (a: T, b: T): T => {
  if (a.shape[0] === 1) {
    const m = tf.matMul(tf.reshape(a, a.shape.slice(1)), tf.reshape(b, b.shape.slice(1)))
    return tf.reshape(m, [1, ...m.shape])
  }
  return tf.matMul(a, b)
}

/** `x [..., in] @ w [in, out] (+ b)`; gradients only into what the caller trains. */
export const linear = (x: T, w: T, bias: T | undefined, trainWeight: boolean): T => {
  const lead = x.shape.slice(0, -1)
  const x2 = tf.reshape(x, [-1, x.shape[x.shape.length - 1]!])
  let y = trainWeight ? matMul(x2, w) : matMulFrozen(x2, w)
  if (bias !== undefined) y = tf.add(y, bias)
  return tf.reshape(y, [...lead, w.shape[1]!])
}

export interface ConvOptions {
  readonly stride: 1 | 2
  /** Symmetric zero padding, PyTorch-style (tfjs's 'same' pads stride-2 convs asymmetrically). */
  readonly padding: number
}

const pads = (p: number): Exclude<Parameters<typeof tf.conv2d>[3], number | string> => [[0, 0], [p, p], [p, p], [0, 0]]

const convForward = (x: T, w: T, o: ConvOptions): T =>
  tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, o.stride, o.padding === 0 ? "valid" : pads(o.padding))

/**
 * Gradient with respect to the input of a convolution, as a forward convolution of the (for stride 2,
 * zero-interleaved) output gradient with the flipped, in/out-swapped filter.
 */
const convInputGrad = (dy: T, w: T, xShape: Array<number>, o: ConvOptions): T => {
  const [kh, kw] = [w.shape[0]!, w.shape[1]!]
  const wFlip = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
  const d = o.stride === 2 ? interleaveZeros(dy) : dy
  const [H, W] = [xShape[1]!, xShape[2]!]
  const [Hd, Wd] = [d.shape[1]!, d.shape[2]!]
  const top = kh - 1 - o.padding
  const left = kw - 1 - o.padding
  const bottom = H - (Hd + top - kh + 1)
  const right = W - (Wd + left - kw + 1)
  if (top < 0 || left < 0 || bottom < 0 || right < 0) throw new Error(`unsupported conv padding ${o.padding} for kernel ${kh}`)
  return tf.conv2d(d as tf.Tensor4D, wFlip as tf.Tensor4D, 1, [[0, 0], [top, bottom], [left, right], [0, 0]])
}

/** `[B,H,W,C]` -> `[B,2H-1,2W-1,C]` with zeros between the rows and columns (rank <= 4 throughout). */
const interleaveZeros = (dy: T): T => {
  const [B, H, W, C] = dy.shape as [number, number, number, number]
  // columns: [B*H, W, 1, C] padded to [B*H, W, 2, C] -> [B*H, 2W, C] -> drop the trailing zero column
  let z = tf.pad(tf.reshape(dy, [B * H, W, 1, C]), [[0, 0], [0, 0], [0, 1], [0, 0]])
  z = tf.slice(tf.reshape(z, [B * H, 2 * W, C]), [0, 0, 0], [B * H, 2 * W - 1, C])
  // rows: [B, H, 1, (2W-1)*C] padded to [B, H, 2, ...] -> [B, 2H, ...] -> drop the trailing zero row
  z = tf.pad(tf.reshape(z, [B, H, 1, (2 * W - 1) * C]), [[0, 0], [0, 0], [0, 1], [0, 0]])
  z = tf.slice(tf.reshape(z, [B, 2 * H, (2 * W - 1) * C]), [0, 0, 0], [B, 2 * H - 1, (2 * W - 1) * C])
  return tf.reshape(z, [B, 2 * H - 1, 2 * W - 1, C])
}

/**
 * Gradient with respect to the filter, `dW[i,j,ci,co] = sum_{b,y,x} xpad[b, s*y+i, s*x+j, ci] dy[b,y,x,co]`,
 * computed as one convolution: the padded input transposed to `[ci, H, W, b]` (channels become the
 * batch, the batch becomes the channels) convolved with the output gradient transposed to
 * `[Ho, Wo, b, co]` as the filter, dilated by the stride. Measured 2-10x faster on wasm than an
 * im2col matMul for UNet-sized layers, and equal for SD-sized ones.
 */
const convFilterGrad = (x: T, dy: T, wShape: Array<number>, o: ConvOptions): T => {
  const [kh, kw, ci, co] = wShape as [number, number, number, number]
  const xp = o.padding === 0 ? x : tf.pad(x, pads(o.padding))
  const xt = tf.transpose(xp, [3, 1, 2, 0]) as tf.Tensor4D
  const dyt = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D
  const full = tf.conv2d(xt, dyt, 1, "valid", "NHWC", o.stride)
  const dw = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [ci, kh, kw, co])
  return tf.transpose(dw, [1, 2, 0, 3])
}

/** 2-D convolution, NHWC x HWIO, both differentiable. */
export const conv2d = (x: T, w: T, o: ConvOptions): T =>
  customGrad<(x: T, w: T) => T>((x: T, w: T, save: tf.GradSaveFunc) => {
    save([x, w])
    return {
      value: convForward(x, w, o),
      gradFunc: (dy: T, [x, w]: Array<T>) => [convInputGrad(dy, w!, x!.shape, o), convFilterGrad(x!, dy, w!.shape, o)]
    }
  })(x, w)

/** 2-D convolution with a frozen filter: only the input gets a gradient. */
export const conv2dFrozen = (x: T, w: T, o: ConvOptions): T =>
  customGrad<(x: T) => T>((x: T, save: tf.GradSaveFunc) => {
    save([w])
    return {
      value: convForward(x, w, o),
      gradFunc: (dy: T, [w]: Array<T>) => convInputGrad(dy, w!, x.shape, o)
    }
  })(x)

/**
 * Nearest-neighbour 2x upsampling `[B,H,W,C] -> [B,2H,2W,C]`. The backward sums each 2x2 block
 * (tfjs-backend-cpu's ResizeNearestNeighborGrad is wrong for batch > 1).
 */
export const upsampleNearest2x = customGrad<(x: T) => T>((x: T) => {
  const [B, H, W, C] = x.shape as [number, number, number, number]
  return {
    value: tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [2 * H, 2 * W]),
    gradFunc: (dy: T) => tf.reshape(tf.sum(tf.reshape(dy, [B * H, 2, W, 2, C]), [1, 3]), [B, H, W, C])
  }
})

/** Identity whose gradient is zero: PyTorch's `detach()`. */
export const stopGradient = customGrad<(x: T) => T>((x: T) => ({
  value: tf.clone(x),
  gradFunc: (dy: T) => tf.zerosLike(dy)
}))

/** Identity on `[B, T, D]` whose gradient is zero on the first `n` rows of the middle axis. */
export const detachLeadingTokens = (x: T, n: number): T =>
  customGrad<(x: T) => T>((x: T) => ({
    value: tf.clone(x),
    gradFunc: (dy: T) => {
      const L = dy.shape[1]!
      return tf.mul(dy, tf.concat([tf.zeros([1, n, 1]), tf.ones([1, L - n, 1])], 1))
    }
  }))(x)
