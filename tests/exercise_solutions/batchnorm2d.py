import numpy as np

AXES = (0, 2, 3)


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    if training:
        M = x.shape[0] * x.shape[2] * x.shape[3]
        mu = x.mean(axis=AXES)
        var = x.var(axis=AXES)
        running_mean[...] = (1 - momentum) * running_mean + momentum * mu
        running_var[...] = (1 - momentum) * running_var + momentum * var * M / (M - 1)
    else:
        mu, var = running_mean, running_var
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
    x_hat = (x - mu.reshape(1, -1, 1, 1)) * inv_std.reshape(1, -1, 1, 1)
    y = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    return y, (x_hat, inv_std.reshape(1, -1, 1, 1), training)


def batchnorm2d_backward(grad_output, cache, gamma):
    x_hat, inv_std, training = cache
    dgamma = (grad_output * x_hat).sum(axis=AXES)
    dbeta = grad_output.sum(axis=AXES)
    g = grad_output * gamma.reshape(1, -1, 1, 1)
    if not training:
        return g * inv_std, dgamma, dbeta
    dx = inv_std * (g - g.mean(axis=AXES, keepdims=True) - x_hat * (g * x_hat).mean(axis=AXES, keepdims=True))
    return dx, dgamma, dbeta
