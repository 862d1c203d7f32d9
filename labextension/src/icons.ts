/** The panel's GPU icon (themed through the jp-icon3 class like Lab's own icons). */
import { LabIcon } from '@jupyterlab/ui-components';

import gpuSvgstr from '../style/gpu.svg';

export const gpuIcon = new LabIcon({ name: 'jupyter-gpuenv:gpu', svgstr: gpuSvgstr });
