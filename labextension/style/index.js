import './base.css';
import './gpus.css';
import './create.css';
